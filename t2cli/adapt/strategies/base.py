"""What a pass-1 strategy declares (`RouterPlugin`) and what it is built from (`RouterContext`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from t2cli.adapt.bank import Bank
    from t2cli.adapt.cem import Score
    from t2cli.adapt.options import StrategyOptions
    from t2cli.adapt.routers import Router
    from t2cli.adapt.runio import InputLine
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.registry import Registry
    from t2cli.models.loading import LoadedModel


@dataclass(frozen=True)
class RouterContext:
    """Everything a strategy may build its router from: the engine slot, the model, the registry, the
    strategy options, the batch to route (few-shot takes shots from it) and a search progress callback."""

    slot: ExpertSlot
    loaded: LoadedModel
    registry: Registry
    options: StrategyOptions
    lines: Sequence[InputLine] = ()
    on_iteration: Callable[[int, int, Score], None] | None = field(default=None, compare=False)  # i, of n, best

    def search_progress(self, iterations: int) -> Callable[[int, Score], None] | None:
        """`on_iteration` for a search of `iterations` iterations."""
        report = self.on_iteration
        return None if report is None else lambda iteration, score: report(iteration, iterations, score)

    def bank(self) -> Bank:
        """The experts to route over (--experts, default every trained expert of the model), plus `other`."""
        from t2cli.adapt.bank import load_bank

        return load_bank(self.registry, self.loaded.slug, self.options.experts)


class RouterPlugin(Protocol):
    """A strategy class, as `--adapt` sees it. Its file imports only what declaring it needs; `build`
    imports the rest, so listing strategies (the CLI's help) stays fast."""

    name: str
    options: tuple[str, ...]  # the StrategyOptions fields it reads

    @classmethod
    def check(cls, options: StrategyOptions) -> None:
        """Refuse missing or wrong options before any model loads."""
        ...

    @classmethod
    def build(cls, context: RouterContext) -> Router:
        """The router for this batch."""
        ...
