"""The shots of a few-shot search: labelled examples from a shots file of one task, or from the batch itself.

A shots file is keyed by its sha256. From a batch (`batch_shot_sets`), the lines that carry their task's
reference are that task's shots, keyed by the sha256 of the canonical shot lines, and all labelled lines
together are the shots of the `mixed` search that serves lines of no (or too thinly labelled) task.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from t2cli.adapt.runio import InputLine, example_for
from t2cli.errors import BadInputError
from t2cli.fsutil import canonical_json, file_sha256
from t2cli.tasks.base import Example, FileTask, Task
from t2cli.tasks.sources import read_jsonl

MIN_SHOTS, MAX_SHOTS = 3, 20
MIXED = "mixed"  # the label of the search over every labelled line of a batch, whatever its task

Shot = tuple[Task, Example]  # a labelled example, and the task that prompts and scores it


def load_shots(task: Task, path: Path) -> list[Example]:
    """The labelled examples of a shots file, in the task's own JSONL format (3 to 20 of them)."""
    if not isinstance(task, FileTask):
        raise BadInputError(f"task {task.name!r} cannot read examples from a file; pick a task like gsm8k, arc, mbpp")
    records = read_jsonl(Path(path))
    if not MIN_SHOTS <= len(records) <= MAX_SHOTS:
        raise BadInputError(f"{path} has {len(records)} examples; few-shot adaptation takes {MIN_SHOTS} to {MAX_SHOTS}")
    # Every record is a shot whatever its id, so the task's split rules (FileTask.load) do not apply.
    return [task._convert(record) for record in records]


@dataclass(frozen=True)
class ShotSet:
    """The shots of one search: the task they belong to (or MIXED), the shots, the input line numbers
    they came from (none from a file), and their sha256 (what a later search must match to reuse this one)."""

    label: str
    shots: tuple[Shot, ...]
    lines: tuple[int, ...]
    sha256: str


def file_shot_set(task: Task, path: Path) -> ShotSet:
    """The shots of a shots file of one task, keyed by the file's sha256."""
    shots = tuple((task, example) for example in load_shots(task, path))
    return ShotSet(task.name, shots, (), file_sha256(Path(path)))


def _shot_set(label: str, labelled: Sequence[tuple[InputLine, Shot]], seed: int) -> ShotSet:
    """At most MAX_SHOTS of the labelled lines (a seeded pick when there are more), in input order."""
    if len(labelled) > MAX_SHOTS:
        labelled = sorted(random.Random(f"{seed}:{label}").sample(list(labelled), MAX_SHOTS), key=lambda x: x[0].number)
    digest = hashlib.sha256(canonical_json([line.data for line, _ in labelled]).encode()).hexdigest()
    return ShotSet(label, tuple(shot for _, shot in labelled), tuple(line.number for line, _ in labelled), digest)


def batch_shot_sets(lines: Sequence[InputLine], seed: int) -> tuple[dict[str, ShotSet], ShotSet | None]:
    """The shots a batch holds: per task with at least MIN_SHOTS labelled lines, its own set; and, when
    some line is left without one (no task, or a task with fewer labelled lines), the MIXED set of all
    labelled lines (None when the batch has fewer than MIN_SHOTS in all)."""
    tasks: dict[str, Task | None] = {}
    labelled: dict[str, list[tuple[InputLine, Shot]]] = {}
    for line in lines:
        found = example_for(line, tasks)
        if found is not None:
            labelled.setdefault(found[0].name, []).append((line, found))
    per_task = {name: _shot_set(name, pairs, seed) for name, pairs in labelled.items() if len(pairs) >= MIN_SHOTS}
    if all(line.task in per_task for line in lines):
        return per_task, None
    pool = sorted((pair for pairs in labelled.values() for pair in pairs), key=lambda pair: pair[0].number)
    return per_task, _shot_set(MIXED, pool, seed) if len(pool) >= MIN_SHOTS else None
