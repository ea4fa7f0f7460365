"""What `t2 run` and `t2 dispatch` share: their strategy flags as StrategyOptions, reading prompt
lines, opening the model, engine and registry, and the few-shot progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from t2cli.cli.common import settings, stderr_console
from t2cli.cli.options import model_and_threads, open_registry

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from rich.progress import Progress, TaskID

    from t2cli.adapt.cem import Score
    from t2cli.adapt.prepare import StrategyOptions
    from t2cli.adapt.runio import InputLine
    from t2cli.engines.slot import ExpertSlot
    from t2cli.models import LoadedModel


def strategy_options(params: Mapping[str, Any]) -> StrategyOptions:
    """The strategy flags, from the parameters of `t2 dispatch` or `t2 run` (they share these names)."""
    from dataclasses import replace

    from t2cli.adapt.prepare import StrategyOptions, default_search

    # A CEM flag left out (None) keeps the default of where the shots come from (a file, or the batch).
    defaults = default_search(from_batch=params["task"] is None and params["shots"] is None)
    given = {key: params[key] for key in ("population", "elites", "iterations") if params[key] is not None}
    search = replace(
        defaults,
        granularity=params["granularity"],
        score=params["cem_score"] or defaults.score,
        cem=replace(defaults.cem, seed=params["seed"], **given),
        max_new_tokens=params["cem_tokens"],
    )
    # --route-tokens left out (None) keeps the library's measured default; 0 asks for the whole request.
    route = {} if params["route_tokens"] is None else {"route_tokens": params["route_tokens"]}
    return StrategyOptions(
        experts=tuple(name.strip() for name in (params["experts"] or "").split(",") if name.strip()),
        classifier=params["classifier"],
        calibrate=params["calibrate"],
        **route,
        task=params["task"],
        shots=params["shots"],
        search=search,
        save_as=params["save_as"],
        force=params["force"],
    )


def read_prompt_lines(ctx: typer.Context, path: Path, *, strict: bool = False) -> list[InputLine]:
    """The valid lines of a prompts file; bad ones are reported by line number (and stop with --strict)."""
    from t2cli.adapt.runio import read_inputs
    from t2cli.errors import BadInputError

    lines, problems = read_inputs(path)
    if problems and strict:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInputError(f"{problems[0].describe(path)}{more}; fix the lines or drop --strict to skip them")
    if not settings(ctx).quiet:
        for problem in problems:
            stderr_console().print(f"skipped {problem.describe(path)}", markup=False, soft_wrap=True)
    if not lines:
        raise BadInputError(f"{path} has no valid prompt lines; each needs `prompt` or `messages`")
    return lines


def check_dispatch_inputs(adapt: str, registry: Path | None, output: Path | None, prompts: Path) -> None:
    """What `t2 dispatch` refuses before any model loads: an -o that is a folder, a device or the prompts
    file, and an --adapt expert name that no model in the registry has (as `t2 run` does)."""
    from t2cli.adapt.prepare import STRATEGIES
    from t2cli.adapt.runio import check_output

    check_output(output, prompts, journal=False)
    if adapt not in ("none", *STRATEGIES):
        open_registry(registry).check_known(adapt, "--adapt")


def check_routed_lengths(lines: Sequence[InputLine], loaded: LoadedModel, route_tokens: int | None) -> None:
    """When pass 1 reads whole requests (--route-tokens 0), each must fit the model's context."""
    from t2cli.adapt.routers import check_route_tokens
    from t2cli.engines.context import check_prompt_tokens

    if check_route_tokens(route_tokens) is None:
        check_prompt_tokens([(f"line {line.number}", line.prompt) for line in lines], loaded)


def open_slot(
    ctx: typer.Context, model: str | None, registry: Path | None, engine: str, batch_size: int, tensor_parallel: int
) -> tuple[LoadedModel, ExpertSlot]:
    """Load the model, start the engine, and wrap it with the registry in an ExpertSlot."""
    from t2cli.engines import check_engine, make_engine, needs_model
    from t2cli.engines.slot import ExpertSlot

    check_engine(engine, tensor_parallel)  # refuse before spending seconds on the model
    # An engine that loads the weights itself: t2 then reads only the checkpoint's files, not a second model.
    loaded = model_and_threads(ctx, model, weights=needs_model(engine, tensor_parallel))
    started = make_engine(engine, loaded, batch_size=batch_size, tensor_parallel=tensor_parallel)
    return loaded, ExpertSlot(started, open_registry(registry), loaded)


def search_callback(progress: Progress, options: StrategyOptions) -> Callable[[int, Score], None]:
    """Feeds a few-shot search's iterations to a progress bar, added on the first one (most runs never search)."""
    bar: list[TaskID] = []

    def advance(iteration: int, score: Score) -> None:
        if not bar:
            bar.append(progress.add_task("searching α", total=options.search_config().cem.iterations))
        progress.update(bar[0], completed=iteration + 1, description=f"searching α (best {score[0]:.3f})")

    return advance
