"""A training run's curves: reward and KL per step, the validation score at each validation, and the base
model's validation score as the line to beat. Drawn from the records of a run folder
(t2cli.training.run_folder), by `t2 plot-run` and by the observer `t2 train` gives the trainer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from t2cli.errors import BadInputError
from t2cli.plots.style import COLORS, drawing, plots_available

if TYPE_CHECKING:
    from t2cli.training.records import StepRecord
    from t2cli.training.run_folder import StepEvent

CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class RunCurves:
    steps: tuple[int, ...]
    reward: tuple[float, ...]
    kl: tuple[float, ...]
    val_steps: tuple[int, ...]
    val_score: tuple[float, ...]
    base_val: float | None  # the base model's validation score; None when the run folder does not record it


def run_curves(records: Sequence[StepRecord], base_val: float | None) -> RunCurves:
    validated = [(r.step, r.val_score) for r in records if r.val_score is not None]
    return RunCurves(
        steps=tuple(r.step for r in records),
        reward=tuple(r.reward for r in records),
        kl=tuple(r.kl for r in records),
        val_steps=tuple(step for step, _ in validated),
        val_score=tuple(score for _, score in validated),
        base_val=base_val,
    )


def plot_run(records: Sequence[StepRecord], base_val: float | None, path: Path, *, title: str = "") -> RunCurves:
    """Reward and KL (left) and validation score against the base's (right); returns what was drawn."""
    from matplotlib.ticker import MaxNLocator

    data = run_curves(records, base_val)
    if not data.steps:
        raise BadInputError(f"no steps logged yet, nothing to draw for {path}; plot again after a step")
    with drawing(path, 10, 3.6) as fig:
        reward_axes, val_axes = fig.subplots(1, 2)
        reward_axes.plot(data.steps, data.reward, color=COLORS[0], lw=1, label="reward")
        reward_axes.set_xlabel("step")
        reward_axes.set_ylabel("mean reward", color=COLORS[0])
        kl_axes = reward_axes.twinx()
        kl_axes.plot(data.steps, data.kl, color=COLORS[1], lw=1, label="KL")
        kl_axes.set_ylabel("KL(π_z ‖ π_base)", color=COLORS[1])
        kl_axes.grid(False)
        kl_axes.spines["right"].set_visible(True)
        reward_axes.set_title(f"{title}: reward and KL per step" if title else "reward and KL per step")
        val_axes.plot(data.val_steps, data.val_score, color=COLORS[2], marker="o", label="expert")
        if data.base_val is not None:
            val_axes.axhline(data.base_val, color="grey", ls="--", label=f"base {data.base_val:.3f}")
        val_axes.set_xlim(0, max(data.steps) + 1)
        val_axes.set_xlabel("step")
        for axes in (reward_axes, val_axes):
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        val_axes.set_ylabel("validation score")
        val_axes.set_title("validation score")
        val_axes.legend(loc="best")
    return data


def write_run_curves(event: StepEvent) -> RunCurves | None:
    """A trainer observer: RUN_DIR/curves.png redrawn at each validation, skipped when matplotlib is missing."""
    if event.record.val_score is None or not plots_available():
        return None
    return plot_run(event.history, event.base_val, Path(event.run_dir) / CURVES_FILE, title=Path(event.run_dir).name)
