"""`t2 dispatch`: pass 1 only — which expert (or α-mixture) each prompt of a JSONL file goes to.

Also the options and steps `t2 run` shares with it: the strategy flags, reading prompt lines, and
opening the model, engine and registry.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import make_progress, print_json, settings, stderr_console, stdout_console
from t2cli.cli.engine_options import EngineOption, TensorParallelOption
from t2cli.cli.options import ModelOption, model_and_threads
from t2cli.cli.registry import JsonOption, RegistryOption, open_registry

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from rich.progress import Progress, TaskID

    from t2cli.cem import Score
    from t2cli.dispatch import ExpertSlot, RoutingReport, StrategyOptions
    from t2cli.models import LoadedModel
    from t2cli.runio import InputLine

PromptsArgument = Annotated[
    Path, typer.Argument(help="JSONL prompts: {id, prompt | messages, task?} per line.", show_default=False)
]
ExpertsOption = Annotated[
    str | None,
    typer.Option("--experts", help="The bank: comma list of experts (default: every trained expert of the model)."),
]
ClassifierOption = Annotated[
    str | None, typer.Option("--classifier", help="classifier: the expert to use (default: the model's cls expert).")
]
TaskOption = Annotated[
    str | None, typer.Option("--task", help="few-shot: the task of the shots (gsm8k, arc, mbpp...).")
]
ShotsOption = Annotated[
    Path | None,
    typer.Option("--shots", help="few-shot: JSONL file of 3-20 labelled examples in the task's own format."),
]
GranularityOption = Annotated[
    str, typer.Option("--cem-granularity", help="few-shot: one α per expert, or per expert and layer (expert|layer).")
]
CemScoreOption = Annotated[
    str,
    typer.Option(
        "--cem-score", help="few-shot: reward (greedy answers; likelihood breaks ties) or likelihood (no generation)."
    ),
]
PopulationOption = Annotated[int, typer.Option("--cem-population", help="few-shot: candidates per CEM iteration.")]
ElitesOption = Annotated[int, typer.Option("--cem-elites", help="few-shot: best candidates the Gaussian is refit to.")]
IterationsOption = Annotated[int, typer.Option("--cem-iterations", help="few-shot: CEM iterations.")]
SeedOption = Annotated[int, typer.Option("--cem-seed", help="few-shot: seed of the CEM samples.")]
CemTokensOption = Annotated[
    int, typer.Option("--cem-max-new-tokens", help="few-shot: answer length when scoring candidates by reward.")
]
SaveAsOption = Annotated[
    str | None, typer.Option("--save-as", help="few-shot: registry name of the found mix (default: TASK-fewshot).")
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="few-shot: search again even if a saved search matches the shots and bank.")
]
CalibrateOption = Annotated[
    bool,
    typer.Option("--calibrate/--no-calibrate", help="prompt: remove the labels' prior (a content-free request)."),
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="Prompts per forward pass.")]


def strategy_options(params: Mapping[str, Any]) -> StrategyOptions:
    """The strategy flags, from the parameters of `t2 dispatch` or `t2 run` (they share these names)."""
    from t2cli.cem import CemConfig
    from t2cli.dispatch import StrategyOptions
    from t2cli.fewshot import SearchConfig

    cem = CemConfig(
        population=params["population"], elites=params["elites"], iterations=params["iterations"], seed=params["seed"]
    )
    search = SearchConfig(
        granularity=params["granularity"], score=params["cem_score"], cem=cem, max_new_tokens=params["cem_tokens"]
    )
    return StrategyOptions(
        experts=tuple(name.strip() for name in (params["experts"] or "").split(",") if name.strip()),
        classifier=params["classifier"],
        calibrate=params["calibrate"],
        task=params["task"],
        shots=params["shots"],
        search=search,
        save_as=params["save_as"],
        force=params["force"],
    )


def read_prompt_lines(ctx: typer.Context, path: Path, *, strict: bool = False) -> list[InputLine]:
    """The valid lines of a prompts file; bad ones are reported by line number (and stop with --strict)."""
    from t2cli.errors import BadInputError
    from t2cli.runio import read_inputs

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


def open_slot(
    ctx: typer.Context, model: str | None, registry: Path | None, engine: str, batch_size: int, tensor_parallel: int
) -> tuple[LoadedModel, ExpertSlot]:
    """Load the model, start the engine, and wrap it with the registry in an ExpertSlot."""
    from t2cli.dispatch import ExpertSlot
    from t2cli.engines import check_engine, make_engine

    check_engine(engine, tensor_parallel)  # refuse before spending seconds on the model
    loaded = model_and_threads(ctx, model)
    started = make_engine(engine, loaded, batch_size=batch_size, tensor_parallel=tensor_parallel)
    return loaded, ExpertSlot(started, open_registry(registry), loaded)


def search_callback(progress: Progress, options: StrategyOptions) -> Callable[[int, Score], None]:
    """Feeds a few-shot search's iterations to a progress bar, added on the first one (most runs never search)."""
    bar: list[TaskID] = []

    def advance(iteration: int, score: Score) -> None:
        if not bar:
            bar.append(progress.add_task("searching α", total=options.search.cem.iterations))
        progress.update(bar[0], completed=iteration + 1, description=f"searching α (best {score[0]:.3f})")

    return advance


def dispatch_command(
    ctx: typer.Context,
    prompts: PromptsArgument,
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="prompt, classifier or few-shot.", show_default=True)
    ] = "prompt",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write one decision per prompt line here (JSONL).")
    ] = None,
    model: ModelOption = None,
    registry: RegistryOption = None,
    experts: ExpertsOption = None,
    classifier: ClassifierOption = None,
    calibrate: CalibrateOption = True,
    task: TaskOption = None,
    shots: ShotsOption = None,
    granularity: GranularityOption = "expert",
    cem_score: CemScoreOption = "reward",
    population: PopulationOption = 8,
    elites: ElitesOption = 3,
    iterations: IterationsOption = 5,
    seed: SeedOption = 0,
    cem_tokens: CemTokensOption = 128,
    save_as: SaveAsOption = None,
    force: ForceOption = False,
    engine: EngineOption = "auto",
    tensor_parallel: TensorParallelOption = 1,
    batch_size: BatchSizeOption = 16,
    json_output: JsonOption = False,
) -> None:
    """Pass 1 only: route each prompt to an expert and show the routing table (and, when lines have a
    `task`, the confusion matrix and routing accuracy).

    Example: t2 dispatch examples/prompts.jsonl --strategy prompt -o decisions.jsonl
    """
    from t2cli.dispatch import STRATEGIES, make_router, routing_report
    from t2cli.errors import BadInputError
    from t2cli.runio import write_jsonl

    if strategy not in STRATEGIES:
        raise BadInputError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    options = strategy_options(ctx.params)
    options.check(strategy)
    lines = read_prompt_lines(ctx, prompts)
    loaded, slot = open_slot(ctx, model, registry, engine, batch_size, tensor_parallel)
    started = time.perf_counter()
    with make_progress(ctx) as progress:
        router = make_router(strategy, slot, loaded, slot.registry, options, search_callback(progress, options))
    decisions = router.decide([line.prompt for line in lines])
    seconds = time.perf_counter() - started
    report = routing_report(decisions, [line.task for line in lines], router.categories)
    if output is not None:
        write_jsonl(
            output,
            (
                {"line": line.number, "id": line.data.get("id"), "task": line.task, **asdict(decision)}
                for line, decision in zip(lines, decisions, strict=True)
            ),
        )
    if json_output:
        print_json(
            {
                "strategy": strategy,
                "engine": slot.engine.name,
                "decisions": len(decisions),
                **asdict(report),
                "seconds": round(seconds, 3),
                "output": str(output) if output else None,
                "note": router.note,
            }
        )
        return
    if settings(ctx).quiet:
        return
    if router.note:
        stdout_console().print(router.note, markup=False)
    print_report(report, strategy, slot.engine.name, seconds)


def print_report(report: RoutingReport, strategy: str, engine: str, seconds: float) -> None:
    console = stdout_console()
    table = Table(title=f"routing ({strategy}, {engine} engine, {seconds:.2f} s)")
    table.add_column("expert")
    table.add_column("prompts", justify="right")
    for expert, count in sorted(report.experts.items(), key=lambda item: -item[1]):
        table.add_row(escape(expert), str(count))
    console.print(table)
    if not report.confusion:
        return
    chosen = sorted({label for row in report.confusion.values() for label in row})
    matrix = Table(title="true task × chosen category")
    matrix.add_column("true \\ chosen")
    for label in chosen:
        matrix.add_column(escape(label), justify="right")
    for truth, row in sorted(report.confusion.items()):
        matrix.add_row(escape(truth), *(str(row.get(label, 0)) for label in chosen))
    console.print(matrix)
    if report.accuracy is not None:
        console.print(f"routing accuracy: {report.accuracy:.1%} of {report.labelled} labelled prompts", markup=False)
