"""`t2 run`: both passes of Transformer² over a JSONL batch — route, swap once per group, generate."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import make_progress, print_json, settings, stderr_console, stdout_console
from t2cli.cli.options import EngineSettings, JsonOption, PromptsArgument, group_values
from t2cli.cli.passes import (
    Routing,
    check_adapt_name,
    open_slot,
    read_prompt_lines,
    search_callback,
    strategy_options,
    with_pass_options,
)

if TYPE_CHECKING:
    from t2cli.stats import Mean, PairedScores


@with_pass_options
def run_command(
    ctx: typer.Context,
    prompts: PromptsArgument,
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
    lora_rank: Annotated[
        int | None,
        typer.Option(
            "--lora-rank",
            min=1,
            help="Pass 2 without swaps (hf engine): all experts in mixed batches, each SVF expert as its rank-R "
            "LoRA export (cached in $T2_HOME/lora). Default: exact weight swaps, one per expert group.",
        ),
    ] = None,
    pass2: Annotated[
        str,
        typer.Option(
            "--pass2",
            help="How pass 2 batches the experts: groups (one swap per expert group) or rows (one batch, each "
            "row with its expert's exact weights: no swaps, one weight copy per expert; hf, and vLLM on CPU).",
        ),
    ] = "groups",
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Also answer every labelled line with `none` (the base weights): rows gain base_completion and "
            "base_score, and the summary pairs both mean scores with their difference.",
        ),
    ] = None,
    json_output: JsonOption = False,
    **given: Any,  # Routing, EngineSettings and StrategyOptions (with_pass_options)
) -> None:
    """Answer every prompt with the expert pass 1 picks for it; outputs keep the input order.

    Example: t2 run examples/prompts.jsonl --adapt prompt -o answers.jsonl
    """
    from t2cli.adapt.prepare import make_router
    from t2cli.adapt.report import base_comparison, row_scores
    from t2cli.adapt.routers import Router
    from t2cli.adapt.runio import Journal, check_output
    from t2cli.adapt.two_pass import check_batching_name, compare_base, run_batch
    from t2cli.engines.base import Sampling
    from t2cli.errors import BadInputError
    from t2cli.fsutil import jsonl_line

    if json_output and output is None:
        raise BadInputError("--json prints a summary on stdout; pass -o FILE for the outputs")
    routing, on = group_values(Routing, ctx.params), group_values(EngineSettings, ctx.params)
    adapt = routing.adapt
    sampling = Sampling(max_new_tokens=max_new_tokens)
    options = strategy_options(ctx, routing.config)
    options.check(adapt)
    if compare not in (None, "none"):
        raise BadInputError(f"--compare {compare!r}: only the base weights can be compared; pass --compare none")
    check_output(output, prompts)
    check_batching_name(pass2)
    check_adapt_name(adapt, on.registry)  # an expert name: it must exist before the model loads
    lines = read_prompt_lines(ctx, prompts, strict=strict)
    started = time.perf_counter()
    loaded, slot = open_slot(ctx, on)
    load_seconds = time.perf_counter() - started
    journal = Journal(output) if output is not None else None
    notes: list[str] = []
    with make_progress(ctx) as progress:

        def router() -> Router:  # built inside run_batch, so a few-shot search counts as pass 1
            built = make_router(adapt, slot, loaded, slot.registry, options, search_callback(progress), lines=lines)
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
            lora_rank=lora_rank,
            batching=pass2,
        )
        if compare is not None:
            progress.update(bar, description="base weights", completed=0, total=None)
            rows = compare_base(lines, rows, slot, sampling)
            if journal is not None:
                journal.commit(rows)
    scores, paired = row_scores(rows), base_comparison(rows) if compare is not None else None
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
        "scores": scores.to_dict() if scores is not None else None,
        **({"compare": paired.to_dict() if paired is not None else None} if compare is not None else {}),
    }
    if json_output:
        print_json(report)
        return
    if settings(ctx).quiet:
        return
    # Without -o stdout holds only the output lines, so the summary goes to stderr.
    console = stdout_console() if output is not None else stderr_console()
    for note in notes:
        console.print(note, markup=False, soft_wrap=True)
    target = output if output is not None else "stdout"
    table = Table(title=escape(f"t2 run --adapt {adapt} → {target}"))
    table.add_column("expert")
    table.add_column("lines", justify="right")
    for expert, count in sorted(summary.experts.items(), key=lambda item: -item[1]):
        table.add_row(escape(expert), str(count))
    console.print(table)
    console.print(
        f"{summary.generated} generated, {summary.reused} reused; {summary.groups} groups"
        f"{' in one batch' if summary.batching == 'rows' else ''}, {summary.swaps} swaps; "
        f"pass 1 {summary.pass1_seconds:.2f} s, pass 2 {summary.pass2_seconds:.2f} s, total {summary.seconds:.2f} s",
        markup=False,
    )
    if paired is not None:
        console.print(score_table(paired, adapt))
    elif scores is not None:
        console.print(f"score of {scores.n} labelled lines: {mean_text(scores)}", markup=False)


def mean_text(mean: Mean) -> str:
    return f"mean {mean.mean:.3f}" + (f" ± {mean.se:.3f} (SE)" if mean.se is not None else "")


def score_table(paired: PairedScores, adapt: str) -> Table:
    """The labelled lines' mean scores, routed and with the base weights, and their paired difference."""
    table = Table(title=f"score of {paired.adapted.n} labelled lines")
    for column in ("answered by", "mean", "SE"):
        table.add_column(column, justify="left" if column == "answered by" else "right")
    for name, mean, sign in (
        (f"--adapt {adapt}", paired.adapted, ""),
        ("base weights", paired.base, ""),
        ("difference (paired)", paired.difference, "+"),
    ):
        table.add_row(escape(name), f"{mean.mean:{sign}.3f}", "–" if mean.se is None else f"{mean.se:.3f}")
    return table
