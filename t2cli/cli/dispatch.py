"""`t2 dispatch`: pass 1 only — which expert (or α-mixture) each prompt of a JSONL file goes to."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import make_progress, print_json, settings, stdout_console
from t2cli.cli.options import EngineSettings, JsonOption, PlotOption, PromptsArgument, check_plot, group_values
from t2cli.cli.passes import (
    Routing,
    check_adapt_name,
    check_routed_lengths,
    open_slot,
    read_prompt_lines,
    search_callback,
    strategy_options,
    with_pass_options,
)

if TYPE_CHECKING:
    from t2cli.adapt.report import RoutingReport


@with_pass_options
def dispatch_command(
    ctx: typer.Context,
    prompts: PromptsArgument,
    strategy: Annotated[
        str | None, typer.Option("--strategy", "-s", hidden=True, help="The old name of --adapt (one more release).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write one decision per prompt line here (JSONL).")
    ] = None,
    json_output: JsonOption = False,
    plot: PlotOption = None,
    **given: Any,  # Routing, EngineSettings and StrategyOptions (with_pass_options)
) -> None:
    """Pass 1 only: route each prompt to an expert and show the routing table (and, when lines have a
    `task`, the confusion matrix and routing accuracy).

    --plot draws the confusion matrix (true task × chosen category) and the prompts per expert.

    Example: t2 dispatch examples/prompts.jsonl --adapt classifier -o decisions.jsonl
    """
    from t2cli.adapt.prepare import make_router
    from t2cli.adapt.report import routing_report
    from t2cli.adapt.runio import check_output
    from t2cli.fsutil import write_jsonl

    routing, on = group_values(Routing, ctx.params), group_values(EngineSettings, ctx.params)
    adapt = strategy if strategy is not None else routing.adapt
    options = strategy_options(ctx, routing.config)
    options.check(adapt)
    check_plot(plot)
    check_output(output, prompts, journal=False)
    check_adapt_name(adapt, on.registry)
    lines = read_prompt_lines(ctx, prompts)
    loaded, slot = open_slot(ctx, on)
    check_routed_lengths(lines, loaded, options.route_tokens)
    started = time.perf_counter()
    with make_progress(ctx) as progress:
        router = make_router(adapt, slot, loaded, slot.registry, options, search_callback(progress), lines=lines)
    decisions = router.decide([line.prompt for line in lines])
    seconds = time.perf_counter() - started
    report = routing_report(decisions, [line.task for line in lines], router.categories)
    if plot is not None:
        from t2cli.plots.routing import plot_routing

        plot_routing(report, plot, title=f"{adapt} routing")
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
                "adapt": adapt,
                "strategy": adapt,  # the old key, kept for scripts written against --strategy
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
    print_report(report, adapt, slot.engine.name, seconds)


def print_report(report: RoutingReport, adapt: str, engine: str, seconds: float) -> None:
    console = stdout_console()
    table = Table(title=f"routing ({adapt}, {engine} engine, {seconds:.2f} s)")
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
