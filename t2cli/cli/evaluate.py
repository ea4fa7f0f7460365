"""`t2 eval`: score the base model and experts on a task, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from t2cli.cli.common import print_json, settings, stdout_console
from t2cli.cli.options import EngineSettings, PlotOption, check_plot, group_values, model_and_threads, with_options


@with_options(EngineSettings)
def eval_command(
    ctx: typer.Context,
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (arc, gsm8k, mbpp, …) or a YAML spec.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Data file or folder, hf://datasets/OWNER/NAME (optionally @REV and /CONFIG) or "
            "t2:math-mix/FILE (default: the task's own, from the Hub).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train, validation or test.")] = "test",
    experts: Annotated[
        list[str] | None, typer.Option("--expert", "-e", help="Expert NAME[@V]; repeat for a side-by-side table.")
    ] = None,
    base: Annotated[
        bool, typer.Option("--base", help="Include the base model (the default with no --expert).")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Only the first N examples.")] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="generate, choices (answer-letter logits) or likelihood (choice texts).")
    ] = "generate",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Generation length.")] = 256,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Per-example results (JSONL).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    plot: PlotOption = None,
    **given: Any,  # EngineSettings (with_options)
) -> None:
    """Evaluate the base model and/or experts on a task.

    --plot draws one bar per expert: its score ± one standard error of the mean over the examples.

    Example: t2 eval --task arc --split validation --base --expert arc -n 100   (ARC-Easy from the Hub)
    """
    from t2cli.engines import check_engine, make_engine, needs_model
    from t2cli.engines.evaluate import MODES, evaluate_experts, write_items
    from t2cli.engines.slot import ExpertSlot
    from t2cli.errors import BadInputError
    from t2cli.experts.bundled import open_registry
    from t2cli.tasks.math_mix import resolve_built
    from t2cli.tasks.registry import resolve_task
    from t2cli.tasks.splits import SPLITS, check_split

    on = group_values(EngineSettings, ctx.params)
    if mode not in MODES:
        raise BadInputError(f"unknown eval mode {mode!r}; use one of {', '.join(MODES)}")
    check_engine(on.engine, on.tensor_parallel)
    check_plot(plot)
    task_obj = resolve_task(task)
    check_split(split, (*SPLITS, "prompt"), task_obj.name)  # spelling only (MBPP adds `prompt`); the task checks more
    store = open_registry(on.registry)
    loaded = model_and_threads(ctx, on.model, weights=needs_model(on.engine, on.tensor_parallel))
    chosen = [store.resolve(spec, loaded.slug).spec for spec in experts or []]
    lineup = ([None] if base or not chosen else []) + chosen
    examples = task_obj.load(resolve_built(data), split, limit)
    runner = make_engine(on.engine, loaded, batch_size=on.batch_size, tensor_parallel=on.tensor_parallel)
    slot = ExpertSlot(runner, store, loaded)
    results = evaluate_experts(slot, task_obj, examples, lineup, mode=mode, max_new_tokens=max_new_tokens)
    if output is not None:
        write_items(output, results)
    if plot is not None:
        from t2cli.plots.evaluation import plot_eval

        plot_eval(results, plot)
    if json_output:
        print_json([r.summary() | {"engine": runner.name} for r in results])
        return
    if settings(ctx).quiet:
        return
    table = Table(title=f"{task_obj.name} ({split}, {mode}) on {loaded.model_id}, {runner.name} engine")
    for column in ("expert", "n", "score", "tokens/s"):
        table.add_column(column, justify="left" if column == "expert" else "right")
    for result in results:
        speed = f"{result.tokens_per_second:.1f}" if mode == "generate" else "—"
        table.add_row(result.label, str(result.n), f"{result.score:.3f}", speed)
    stdout_console().print(table)
