"""`t2 export`: an expert as a PEFT LoRA folder or a merged transformers checkpoint, with its fidelity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import print_json, settings, stdout_console
from t2cli.cli.options import (
    ModelOption,
    PlotOption,
    RegistryOption,
    SpecArgument,
    check_plot,
    model_and_threads,
)

if TYPE_CHECKING:
    from t2cli.experts.fidelity import FidelityReport


def format_help() -> str:
    from t2cli.experts.formats import EXPORTERS

    return f"One of: {', '.join(EXPORTERS.names())} (peft-lora: a PEFT adapter; merged: W' baked in)."


def _fidelity_table(report: FidelityReport, title: str) -> Table:
    table = Table(title=escape(title))
    for column in ("matrices", "count", "rank", "energy kept", "max rel. error"):
        table.add_column(column, justify="left" if column == "matrices" else "right")
    for g in report.rows():
        ranks = str(g.min_rank) if g.min_rank == g.max_rank else f"{g.min_rank}–{g.max_rank}"
        table.add_row(g.label, str(g.matrices), ranks, f"{g.energy:.4%}", f"{g.max_error:.2e}")
    return table


def export_command(
    ctx: typer.Context,
    spec: SpecArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="New (or empty) folder to write.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=format_help())],
    rank: Annotated[
        int | None,
        typer.Option("--rank", help="peft-lora: keep K components per matrix (default: the rank it was trained at)."),
    ] = None,
    energy: Annotated[
        float | None,
        typer.Option("--energy", help="peft-lora: smallest rank per matrix keeping this share of ‖ΔW‖² (0-1]."),
    ] = None,
    eval_task: Annotated[
        str | None, typer.Option("--eval", help="Also score base, exact expert and export on this task.")
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="--eval: data file or folder.")] = None,
    split: Annotated[str, typer.Option("--split", help="--eval: train, validation or test.")] = "test",
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="--eval: only the first N examples.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="--eval: generate, choices or likelihood.")] = "generate",
    plot: PlotOption = None,
    model: ModelOption = None,
    registry: RegistryOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Export an expert for other runtimes (PEFT, vLLM, plain transformers).

    Example: t2 export arc --format peft-lora --rank 64 -o arc-lora
    """
    from t2cli.engines.evaluate import MODES, compare_export, gain_retained
    from t2cli.errors import BadInputError
    from t2cli.experts.bundled import open_registry
    from t2cli.experts.export import (
        budget_formats,
        check_outside_registry,
        check_request,
        expert_factors,
        export_expert,
        load_export,
        planned_budget,
    )
    from t2cli.fsutil import disk_errors
    from t2cli.models.loading import slugify
    from t2cli.tasks.registry import resolve_task

    check_request(fmt, output, rank, energy)
    check_plot(plot)
    if mode not in MODES:
        raise BadInputError(f"unknown eval mode {mode!r}; use one of {', '.join(MODES)}")
    store = open_registry(registry)
    check_outside_registry(output, store.root)
    ref = store.resolve(spec, slugify(model) if model and not Path(model).expanduser().is_dir() else None)
    manifest = ref.manifest()
    rank, truncated = planned_budget(fmt, manifest, rank, energy)
    if plot is not None and not truncated:
        raise BadInputError(
            f"--plot draws an SVF expert's LoRA fidelity curve; use it with --format {' or '.join(budget_formats())}"
        )
    loaded = model_and_threads(ctx, model or manifest.base_model)
    expert = ref.load(loaded.fingerprint)
    factors = expert_factors(loaded, expert)
    with disk_errors(output.parent, "the export"):
        result = export_expert(loaded, expert, factors, ref.path, output, fmt, rank=rank, energy=energy)
    payload: dict[str, Any] = result.to_dict()
    if plot is not None:
        from t2cli.experts.export import expert_spectra
        from t2cli.experts.fidelity import fidelity_curve
        from t2cli.plots.export import plot_fidelity

        spectra = expert_spectra(expert, factors)
        ranks = list(range(1, max(change.numel() for change, _ in spectra.values()) + 1))
        plot_fidelity(fidelity_curve(spectra, ranks), plot, chosen=rank, title=ref.spec)
    scores = None
    if eval_task is not None:
        exported = load_export(loaded, output, fmt)
        task_obj = resolve_task(eval_task)
        scores = compare_export(loaded, expert, exported, task_obj, task_obj.load(data, split, limit), mode)
        payload["eval"] = {
            "task": eval_task,
            "mode": mode,
            "n": scores[0].n,
            "scores": {r.label: round(r.score, 4) for r in scores},
            "gain_retained": gain_retained(scores),
        }
    if json_output:
        print_json(payload)
        return
    if settings(ctx).quiet:
        return
    console = stdout_console()
    if result.report is not None:
        title = f"{ref.spec} as a LoRA ({result.parameters:,} parameters): ΔW kept, and ‖ΔW − ΔW_k‖/‖W′‖"
        console.print(_fidelity_table(result.report, title))
    else:
        console.print(f"{escape(ref.spec)}: exact export ({fmt})")
    if scores is not None:
        table = Table(title=escape(f"{eval_task} ({split}, {mode}, n={scores[0].n})"))
        for column in ("weights", "score"):
            table.add_column(column, justify="left" if column == "weights" else "right")
        for r in scores:
            table.add_row(r.label, f"{r.score:.3f}")
        console.print(table)
        retained = payload["eval"]["gain_retained"]
        if retained is not None:
            console.print(f"gain over the base kept by the export: {retained:.1%}")
    console.print(f"written to {escape(str(output))}")
