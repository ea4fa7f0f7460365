"""A training run's folder, the one owner of its format: `log.jsonl` (one StepRecord per step, in order),
the checkpoint's two files, and reading them back (`t2 plot-run`, resume, the curves).

Every process reads it; only the main one writes it (t2cli.training.trainer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from t2cli.errors import BadInputError, NotFoundError
from t2cli.training.records import StepRecord

LOG_FILE = "log.jsonl"
CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


@dataclass(frozen=True)
class StepEvent:
    """What the trainer tells its observers after each step (progress bars, curves, logs the CLI adds)."""

    record: StepRecord
    history: Sequence[StepRecord]  # every step of the run so far, this one last (resumed steps included)
    base_val: float  # the base model's validation score: the line to beat
    run_dir: Path


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG_FILE


def rewrite_log(run_dir: Path, records: Sequence[StepRecord]) -> None:
    """The log holding exactly `records` (on resume: the steps up to the checkpoint; they are redone after)."""
    log_path(run_dir).write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))


def append_log(run_dir: Path, record: StepRecord) -> None:
    with log_path(run_dir).open("a") as log:
        log.write(json.dumps(asdict(record)) + "\n")


def read_log(run_dir: Path) -> list[StepRecord]:
    """The step records of a run folder; a line that is not one is refused with its number."""
    log = log_path(run_dir)
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
    return records


def read_run(run_dir: Path) -> tuple[list[StepRecord], float | None]:
    """The step records of a run folder and its base validation score (from the checkpoint, if one exists)."""
    records = read_log(run_dir)
    state = Path(run_dir) / CHECKPOINT_STATE
    base_val = json.loads(state.read_text()).get("base_val") if state.is_file() else None
    return records, base_val
