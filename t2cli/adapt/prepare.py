"""Everything pass 1 needs before it can route: the bank resolved, the classifier found, a
few-shot mixture searched (or reused) and published — one for a shots file, or one per task whose
labelled lines the batch holds. Routing itself (t2cli.adapt.routers) is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from t2cli.adapt.cem import Score
from t2cli.adapt.fewshot import (
    BATCH_SEARCH,
    MIN_SHOTS,
    SearchConfig,
    ShotSet,
    alpha_summary,
    batch_shot_sets,
    few_shot_expert,
    searched_or_found,
)
from t2cli.adapt.runio import InputLine
from t2cli.errors import BadInputError, NotFoundError
from t2cli.experts.recipes import recipe_from_dict
from t2cli.fsutil import canonical_json
from t2cli.tasks.registry import resolve_task

if TYPE_CHECKING:
    from t2cli.adapt.bank import Bank
    from t2cli.experts.registry import ExpertRef, Registry
    from t2cli.models import LoadedModel
from t2cli.adapt.bank import find_classifier, load_bank
from t2cli.adapt.routers import (
    BASE,
    ROUTE_TOKENS,
    ClassifierRouter,
    Decision,
    FixedRouter,
    LabelRouter,
    Router,
    TaskRouter,
    check_route_tokens,
)
from t2cli.engines.slot import ExpertSlot

STRATEGIES = ("prompt", "classifier", "few-shot")


@dataclass(frozen=True)
class StrategyOptions:
    """Options of the strategies beyond their name (CLI flags)."""

    experts: tuple[str, ...] = ()
    classifier: str | None = None
    calibrate: bool = True
    route_tokens: int | None = ROUTE_TOKENS  # prompt, classifier: request tokens read (None: all)
    task: str | None = None
    shots: Path | None = None
    search: SearchConfig | None = None  # None: default_search(...) for where the shots come from
    save_as: str | None = None
    force: bool = False

    def few_shot_inputs(self) -> tuple[str, Path] | None:
        """--task and --shots, or None when both are left out: the shots come from the batch."""
        if self.task is None and self.shots is None:
            return None
        if self.task is None or self.shots is None:
            raise BadInputError(
                "few-shot takes --task T and --shots FILE together (3 to 20 labelled examples of T); "
                "leave both out to take the shots from the batch's labelled lines"
            )
        return self.task, self.shots

    def search_config(self) -> SearchConfig:
        return self.search or default_search(from_batch=self.few_shot_inputs() is None)

    def check(self, adapt: str) -> None:
        """Refuse a strategy whose flags are missing or wrong, before any model is loaded."""
        check_route_tokens(self.route_tokens)
        if adapt == "few-shot":
            self.few_shot_inputs()


def default_search(*, from_batch: bool) -> SearchConfig:
    """The search when no flag says otherwise: a shots file gets the full reward search; shots from the
    batch get the cheaper likelihood search (BATCH_SEARCH), since a batch of several tasks runs several."""
    return BATCH_SEARCH if from_batch else SearchConfig()


def make_router(
    adapt: str,
    slot: ExpertSlot,
    loaded: LoadedModel,
    registry: Registry,
    options: StrategyOptions | None = None,
    on_iteration: Callable[[int, Score], None] | None = None,
    lines: Sequence[InputLine] = (),
) -> Router:
    """The router for `--adapt`: none, a strategy, or an expert name (`name[@version]`). Few-shot
    without --task/--shots takes its shots from `lines` (the batch to route)."""
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
        return LabelRouter(slot, loaded, bank, calibrate=options.calibrate, route_tokens=options.route_tokens)
    if adapt == "classifier":
        classifier = find_classifier(registry, loaded.slug, options.classifier)
        return ClassifierRouter(slot, loaded, bank, classifier, route_tokens=options.route_tokens)
    inputs = options.few_shot_inputs()
    if inputs is None:
        return batch_router(slot, loaded, registry, bank, lines, options, on_iteration)
    task = resolve_task(inputs[0])
    ref, searched = few_shot_expert(
        registry,
        slot,
        loaded.chat,
        [e.ref for e in bank.experts],
        task,
        inputs[1],
        options.search_config(),
        name=options.save_as,
        force=options.force,
        on_iteration=on_iteration,
    )
    return FixedRouter(searched_decision(ref, task.name), _saved(ref, searched))


def searched_decision(ref: ExpertRef, label: str) -> Decision:
    """Routing to a searched expert: its spec, its α per bank expert, and the search's metrics."""
    manifest = ref.manifest()
    alpha = alpha_summary(recipe_from_dict(manifest.provenance["recipe"], str(ref.path)))
    return Decision(ref.spec, alpha, label, dict(manifest.metrics))


def _saved(ref: ExpertRef, searched: bool) -> str:
    return (
        f"searched α and saved {ref.spec}" if searched else f"reused {ref.spec} (same shots and bank; --force to redo)"
    )


def batch_router(
    slot: ExpertSlot,
    loaded: LoadedModel,
    registry: Registry,
    bank: Bank,
    lines: Sequence[InputLine],
    options: StrategyOptions,
    on_iteration: Callable[[int, Score], None] | None = None,
) -> TaskRouter:
    """Few-shot with the shots from the batch: one search per task with enough labelled lines, and one
    over all labelled lines (MIXED) for the rest — or the base weights when the batch has fewer than
    MIN_SHOTS labelled lines. The lines used as shots are marked (`shot`) in their decisions."""
    if not lines:
        raise BadInputError("few-shot needs --task T and --shots FILE, or prompt lines to take labelled shots from")
    config = options.search_config()
    per_task, pool = batch_shot_sets(lines, config.cem.seed)
    notes: list[str] = []

    def search(shot_set: ShotSet) -> Decision:
        name = f"{options.save_as}-{shot_set.label}" if options.save_as else None
        ref, searched = searched_or_found(
            registry,
            slot,
            loaded.chat,
            [e.ref for e in bank.experts],
            shot_set,
            config,
            name=name,
            force=options.force,
            on_iteration=on_iteration,
        )
        serves = f", for the {len(rest)} lines without their own task's shots" if shot_set is pool else ""
        notes.append(f"{shot_set.label} ({len(shot_set.shots)} shots{serves}): {_saved(ref, searched)}")
        return searched_decision(ref, shot_set.label)

    rest = [line for line in lines if line.task not in per_task]
    by_task = {name: search(shot_set) for name, shot_set in per_task.items()}
    fallback = search(pool) if pool is not None else BASE
    if rest and pool is None:
        notes.append(
            f"{len(rest)} lines keep the base weights: the batch has fewer than {MIN_SHOTS} labelled lines "
            "to search a mixture for them"
        )
    table: dict[str, Decision] = {}
    for line in lines:
        own = per_task.get(line.task or "", pool)
        decision = by_task.get(line.task or "", fallback)
        # A shot of the search that answers it: its score is not a held-out score.
        decision = replace(decision, shot=True) if own is not None and line.number in own.lines else decision
        # A prompt asked on several lines is decided once: as its first line, and a shot if any was.
        first = table.setdefault(canonical_json(line.prompt), decision)
        if decision.shot and not first.shot:
            table[canonical_json(line.prompt)] = replace(first, shot=True)
    return TaskRouter(table, fallback, "few-shot from the batch: " + "; ".join(notes))
