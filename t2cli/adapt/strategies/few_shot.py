"""`--adapt few-shot`: one α-mixture of the bank found by CEM on a few labelled shots and kept as a registry
expert (reused when the same shots and bank come again): from a shots file (--task, --shots), or one per
task whose labelled lines the batch holds."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from t2cli.adapt.fewshot import SearchConfig
    from t2cli.adapt.options import StrategyOptions
    from t2cli.adapt.routers import Decision, Router, TaskRouter
    from t2cli.adapt.shots import ShotSet
    from t2cli.adapt.strategies.base import RouterContext
    from t2cli.experts.registry import ExpertRef


def search_config(options: StrategyOptions) -> SearchConfig:
    """The search these options ask for: the default for where the shots come from (a file gets the full
    reward search; shots from the batch the cheaper likelihood one, BATCH_SEARCH, since a batch of several
    tasks runs several), with every CEM setting they give over it."""
    from t2cli.adapt.fewshot import BATCH_SEARCH, SearchConfig

    defaults = BATCH_SEARCH if options.few_shot_inputs() is None else SearchConfig()
    given = {
        key: value
        for key, value in (
            ("population", options.cem_population),
            ("elites", options.cem_elites),
            ("iterations", options.cem_iterations),
        )
        if value is not None
    }
    return replace(
        defaults,
        granularity=options.cem_granularity,
        score=options.cem_score or defaults.score,
        cem=replace(defaults.cem, seed=options.cem_seed, **given),
        max_new_tokens=options.cem_max_new_tokens,
    )


def saved_note(ref: ExpertRef, searched: bool) -> str:
    return (
        f"searched α and saved {ref.spec}" if searched else f"reused {ref.spec} (same shots and bank; --force to redo)"
    )


class FewShotStrategy:
    name = "few-shot"
    options = (
        "experts",
        "task",
        "shots",
        "cem_granularity",
        "cem_score",
        "cem_population",
        "cem_elites",
        "cem_iterations",
        "cem_seed",
        "cem_max_new_tokens",
        "save_as",
        "force",
    )

    @classmethod
    def check(cls, options: StrategyOptions) -> None:
        options.few_shot_inputs()

    @classmethod
    def build(cls, context: RouterContext) -> Router:
        from t2cli.adapt.fewshot import few_shot_expert
        from t2cli.adapt.prepare import searched_decision
        from t2cli.adapt.routers import FixedRouter
        from t2cli.adapt.shots import file_shot_set
        from t2cli.tasks.registry import resolve_task

        options = context.options
        bank = context.bank()
        inputs = options.few_shot_inputs()
        if inputs is None:
            return batch_router(context, [e.ref for e in bank.experts])
        task = resolve_task(inputs[0])
        config = search_config(options)
        ref, searched = few_shot_expert(
            context.registry,
            context.slot,
            context.loaded.chat,
            [e.ref for e in bank.experts],
            file_shot_set(task, inputs[1]),
            config,
            name=options.save_as,
            force=options.force,
            on_iteration=context.search_progress(config.cem.iterations),
        )
        return FixedRouter(searched_decision(ref, task.name), saved_note(ref, searched))


def batch_router(context: RouterContext, experts: list[ExpertRef]) -> TaskRouter:
    """Few-shot with the shots from the batch: one search per task with enough labelled lines, and one
    over all labelled lines (MIXED) for the rest — or the base weights when the batch has fewer than
    MIN_SHOTS labelled lines. The lines used as shots are marked (`shot`) in their decisions."""
    from t2cli.adapt.fewshot import few_shot_expert
    from t2cli.adapt.prepare import searched_decision
    from t2cli.adapt.routers import BASE, TaskRouter
    from t2cli.adapt.shots import MIN_SHOTS, batch_shot_sets
    from t2cli.errors import BadInputError
    from t2cli.fsutil import canonical_json

    lines, options = context.lines, context.options
    if not lines:
        raise BadInputError("few-shot needs --task T and --shots FILE, or prompt lines to take labelled shots from")
    config = search_config(options)
    per_task, pool = batch_shot_sets(lines, config.cem.seed)
    notes: list[str] = []

    def search(shot_set: ShotSet) -> Decision:
        name = f"{options.save_as}-{shot_set.label}" if options.save_as else None
        ref, searched = few_shot_expert(
            context.registry,
            context.slot,
            context.loaded.chat,
            experts,
            shot_set,
            config,
            name=name,
            force=options.force,
            on_iteration=context.search_progress(config.cem.iterations),
        )
        serves = f", for the {len(rest)} lines without their own task's shots" if shot_set is pool else ""
        notes.append(f"{shot_set.label} ({len(shot_set.shots)} shots{serves}): {saved_note(ref, searched)}")
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
