"""`t2 run`: both passes of Transformer² over a JSONL batch — route, swap once per group, generate."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import make_progress, print_json, settings, stdout_console
from t2cli.cli.options import (
    BatchSizeOption,
    CalibrateOption,
    CemScoreOption,
    CemTokensOption,
    ClassifierOption,
    ElitesOption,
    EngineOption,
    ExpertsOption,
    ForceOption,
    GranularityOption,
    IterationsOption,
    ModelOption,
    PopulationOption,
    PromptsArgument,
    SaveAsOption,
    SeedOption,
    ShotsOption,
    TaskOption,
    TensorParallelOption,
)
from t2cli.cli.passes import open_slot, read_prompt_lines, search_callback, strategy_options
from t2cli.cli.registry import JsonOption, RegistryOption


def run_command(
    ctx: typer.Context,
    prompts: PromptsArgument,
    adapt: Annotated[
        str,
        typer.Option("--adapt", "-a", help="none, prompt, classifier, few-shot, or an expert name[@version]."),
    ] = "prompt",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output JSONL, one line per valid input line (default: stdout)."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Tokens to generate per prompt.")] = 256,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop (exit 2) on malformed input lines instead of skipping them.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Reuse finished lines of -o and its .partial journal (same input)."),
    ] = True,
    engine: EngineOption = "auto",
    tensor_parallel: TensorParallelOption = 1,
    batch_size: BatchSizeOption = 16,
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
    json_output: JsonOption = False,
) -> None:
    """Answer every prompt with the expert pass 1 picks for it; outputs keep the input order.

    Example: t2 run examples/prompts.jsonl --adapt prompt -o answers.jsonl
    """
    from t2cli.adapt.prepare import make_router
    from t2cli.adapt.routers import Router
    from t2cli.adapt.runio import Journal, jsonl_line
    from t2cli.adapt.two_pass import run_batch
    from t2cli.engines.base import Sampling
    from t2cli.errors import BadInputError

    if json_output and output is None:
        raise BadInputError("--json prints a summary on stdout; pass -o FILE for the outputs")
    sampling = Sampling(max_new_tokens=max_new_tokens)
    options = strategy_options(ctx.params)
    options.check(adapt)
    lines = read_prompt_lines(ctx, prompts, strict=strict)
    started = time.perf_counter()
    loaded, slot = open_slot(ctx, model, registry, engine, batch_size, tensor_parallel)
    load_seconds = time.perf_counter() - started
    journal = Journal(output) if output is not None else None
    notes: list[str] = []
    with make_progress(ctx) as progress:

        def router() -> Router:  # built inside run_batch, so a few-shot search counts as pass 1
            built = make_router(adapt, slot, loaded, slot.registry, options, search_callback(progress, options))
            if built.note:
                notes.append(built.note)
            return built

        bar = progress.add_task("running", total=None)
        rows, summary = run_batch(
            lines,
            router,
            slot,
            sampling,
            journal=journal,
            resume=resume,
            on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    if output is None:
        sys.stdout.write("".join(jsonl_line(row) for row in rows))
        sys.stdout.flush()
    report = {
        "adapt": adapt,
        "engine": slot.engine.name,
        "model": loaded.model_id,
        "output": str(output) if output else None,
        **summary.to_dict(),
        "load_seconds": round(load_seconds, 3),
        "notes": notes,
    }
    if json_output:
        print_json(report)
        return
    if settings(ctx).quiet or output is None:
        return
    console = stdout_console()
    for note in notes:
        console.print(note, markup=False)
    table = Table(title=escape(f"t2 run --adapt {adapt} → {output}"))
    table.add_column("expert")
    table.add_column("lines", justify="right")
    for expert, count in sorted(summary.experts.items(), key=lambda item: -item[1]):
        table.add_row(escape(expert), str(count))
    console.print(table)
    console.print(
        f"{summary.generated} generated, {summary.reused} reused; {summary.groups} groups, {summary.swaps} swaps; "
        f"pass 1 {summary.pass1_seconds:.2f} s, pass 2 {summary.pass2_seconds:.2f} s, total {summary.seconds:.2f} s",
        markup=False,
    )
