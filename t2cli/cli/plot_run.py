"""`t2 plot-run`: redraw a training run's curves (reward, KL, validation score) from RUN_DIR/log.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from t2cli.cli.common import settings, stdout_console
from t2cli.cli.options import check_plot


def plot_run_command(
    ctx: typer.Context,
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder of `t2 train` (its --run-dir, default $T2_HOME/runs/MODEL/NAME).")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG to write (default: RUN_DIR/curves.png).")
    ] = None,
) -> None:
    """Draw reward and KL per step and the validation score against the base model's, from the run's log.

    `t2 train` draws RUN_DIR/curves.png itself at each validation when matplotlib is installed; this redraws it,
    e.g. for a run that is still going or was trained without matplotlib. The base line needs a checkpoint.

    Example: t2 plot-run ~/.cache/t2/runs/smollm2-135m/arc -o arc-curves.png
    """
    from t2cli.plots.training import CURVES_FILE, plot_run
    from t2cli.training.run_folder import read_run

    records, base_val = read_run(run_dir)
    target = output or run_dir / CURVES_FILE
    check_plot(target)
    plot_run(records, base_val, target, title=run_dir.name)
    if not settings(ctx).quiet:
        stdout_console().print(f"wrote {target} ({len(records)} steps)", markup=False)
