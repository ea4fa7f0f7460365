"""Everything pass 1 needs before it can route: the bank resolved, the classifier found, a
few-shot mixture searched (or reused) and published. Routing itself (t2cli.adapt.routers) is pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from t2cli.adapt.cem import Score
from t2cli.adapt.fewshot import SearchConfig, alpha_summary, few_shot_expert
from t2cli.errors import BadInputError, NotFoundError
from t2cli.experts.recipes import recipe_from_dict
from t2cli.tasks.registry import resolve_task

if TYPE_CHECKING:
    from t2cli.experts.registry import Registry
    from t2cli.models import LoadedModel
from t2cli.adapt.bank import find_classifier, load_bank
from t2cli.adapt.routers import BASE, ClassifierRouter, Decision, FixedRouter, LabelRouter, Router
from t2cli.engines.slot import ExpertSlot

STRATEGIES = ("prompt", "classifier", "few-shot")


@dataclass(frozen=True)
class StrategyOptions:
    """Options of the strategies beyond their name (CLI flags)."""

    experts: tuple[str, ...] = ()
    classifier: str | None = None
    calibrate: bool = True
    task: str | None = None
    shots: Path | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    save_as: str | None = None
    force: bool = False

    def few_shot_inputs(self) -> tuple[str, Path]:
        if self.task is None or self.shots is None:
            raise BadInputError("few-shot adaptation needs --task T and --shots FILE (3 to 20 labelled examples of T)")
        return self.task, self.shots

    def check(self, adapt: str) -> None:
        """Refuse a strategy whose flags are missing, before any model is loaded."""
        if adapt == "few-shot":
            self.few_shot_inputs()


def make_router(
    adapt: str,
    slot: ExpertSlot,
    loaded: LoadedModel,
    registry: Registry,
    options: StrategyOptions | None = None,
    on_iteration: Callable[[int, Score], None] | None = None,
) -> Router:
    """The router for `--adapt`: none, a strategy, or an expert name (`name[@version]`)."""
    options = options or StrategyOptions()
    if adapt == "none":
        return FixedRouter(BASE)
    if adapt not in STRATEGIES:
        try:
            ref = registry.resolve(adapt, loaded.slug)
        except NotFoundError as error:
            raise NotFoundError(f"--adapt takes none, {', '.join(STRATEGIES)} or an expert name: {error}") from None
        return FixedRouter(Decision(ref.spec, None, ref.manifest().task or ref.name, {}))
    bank = load_bank(registry, loaded.slug, options.experts)
    if adapt == "prompt":
        return LabelRouter(slot, loaded, bank, calibrate=options.calibrate)
    if adapt == "classifier":
        return ClassifierRouter(slot, loaded, bank, find_classifier(registry, loaded.slug, options.classifier))
    task_name, shots = options.few_shot_inputs()
    task = resolve_task(task_name)
    ref, searched = few_shot_expert(
        registry,
        slot,
        loaded.chat,
        [e.ref for e in bank.experts],
        task,
        shots,
        options.search,
        name=options.save_as,
        force=options.force,
        on_iteration=on_iteration,
    )
    manifest = ref.manifest()
    alpha = alpha_summary(recipe_from_dict(manifest.provenance["recipe"], str(ref.path)))
    note = (
        f"searched α and saved {ref.spec}" if searched else f"reused {ref.spec} (same shots and bank; --force to redo)"
    )
    return FixedRouter(Decision(ref.spec, alpha, task.name, dict(manifest.metrics)), note)
