"""Everything pass 1 needs before it can route: `--adapt` resolved to a router. `none` keeps the base
weights, a registered strategy (t2cli.adapt.strategies) builds its router — resolving the bank and the
classifier, or searching (or reusing) and publishing a few-shot mixture — and any other name is an expert
of the registry. Routing itself (t2cli.adapt.routers) is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from t2cli.adapt.options import StrategyOptions
from t2cli.adapt.strategies import NONE, ROUTERS, adapt_names
from t2cli.errors import BadInputError, NotFoundError

if TYPE_CHECKING:
    from t2cli.adapt.cem import Score
    from t2cli.adapt.routers import Decision, Router
    from t2cli.adapt.runio import InputLine
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.registry import ExpertRef, Registry
    from t2cli.models.loading import LoadedModel


def make_router(
    adapt: str,
    slot: ExpertSlot,
    loaded: LoadedModel,
    registry: Registry,
    options: StrategyOptions | None = None,
    on_iteration: Callable[[int, int, Score], None] | None = None,
    lines: Sequence[InputLine] = (),
) -> Router:
    """The router for `--adapt`: none, a strategy, or an expert name (`name[@version]`). Few-shot
    without --task/--shots takes its shots from `lines` (the batch to route); `on_iteration` hears of each
    iteration of its searches (iteration, iterations, best score)."""
    from t2cli.adapt.routers import BASE, Decision, FixedRouter

    options = options or StrategyOptions()
    if adapt == NONE:
        return FixedRouter(BASE)
    if adapt in ROUTERS:
        from t2cli.adapt.strategies.base import RouterContext

        return ROUTERS.get(adapt).build(RouterContext(slot, loaded, registry, options, lines, on_iteration))
    try:
        ref = registry.resolve(adapt, loaded.slug)
    except NotFoundError as error:
        raise NotFoundError(f"--adapt takes {', '.join(adapt_names())} or an expert name: {error}") from None
    manifest = ref.manifest()
    if manifest.kind != "expert":
        raise BadInputError(
            f"{ref.spec} is a {manifest.kind}, not an expert; route with it: --adapt probe --classifier {ref.spec}"
        )
    return FixedRouter(Decision(ref.spec, None, manifest.task or ref.name, {}))


def searched_decision(ref: ExpertRef, label: str) -> Decision:
    """Routing to a searched expert: its spec, its α per bank expert, and the search's metrics."""
    from t2cli.adapt.routers import Decision
    from t2cli.experts.recipes import alpha_summary, recipe_from_dict

    manifest = ref.manifest()
    alpha = alpha_summary(recipe_from_dict(manifest.provenance["recipe"], str(ref.path)))
    return Decision(ref.spec, alpha, label, dict(manifest.metrics))
