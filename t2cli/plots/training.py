"""A training run's curves: reward and KL per step, the validation score at each validation, and the base
model's validation score as the line to beat. Drawn from the records of `RUN_DIR/log.jsonl`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from t2cli.errors import BadInputError, NotFoundError
from t2cli.plots.style import COLORS, drawing, plots_available

if TYPE_CHECKING:
    from t2cli.training.records import StepRecord

CURVES_FILE = "curves.png"
LOG_FILE = "log.jsonl"


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


def read_run(run_dir: Path) -> tuple[list[StepRecord], float | None]:
    """The step records of a run folder and its base validation score (from the checkpoint, if one exists)."""
    from t2cli.training.checkpoint import STATE
    from t2cli.training.records import StepRecord

    log = Path(run_dir) / LOG_FILE
    if not log.is_file():
        raise NotFoundError(f"{log} does not exist; give the run folder `t2 train` wrote (its --run-dir)")
    known = {f.name for f in fields(StepRecord)}
    records = []
    for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            records.append(StepRecord(**{k: v for k, v in data.items() if k in known}))
        except (json.JSONDecodeError, TypeError) as error:
            raise BadInputError(
                f"{log} line {number} is not a step record ({error}); is this a t2 run folder?"
            ) from None
    checkpoint = Path(run_dir) / STATE
    base_val = json.loads(checkpoint.read_text()).get("base_val") if checkpoint.is_file() else None
    return records, base_val


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


def write_run_curves(run_dir: Path, records: Sequence[StepRecord], base_val: float) -> RunCurves | None:
    """The training loop's call at each validation: RUN_DIR/curves.png, skipped when matplotlib is missing."""
    if not plots_available():
        return None
    return plot_run(records, base_val, Path(run_dir) / CURVES_FILE, title=Path(run_dir).name)
