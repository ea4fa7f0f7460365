"""How a task's records are cut into the train, validation and test splits: fixed and seeded, so every
run (and every machine) sees the same examples in the same split."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from t2cli.errors import BadInputError

if TYPE_CHECKING:
    from t2cli.tasks.record import Record

SPLITS = ("train", "validation", "test")
VALIDATION_FRACTION = 0.1
HOLDOUT_SEED = 0


def check_split(split: str, allowed: tuple[str, ...], task: str) -> None:
    if split not in allowed:
        raise BadInputError(f"unknown split {split!r} for task {task}; use one of: {', '.join(allowed)}")


def holdout_split(records: list[Record], split: str, task: str) -> list[Record]:
    """Cut one file into splits: "test" is every record; "train" and "validation" are a fixed seeded
    90/10 partition, so a train file serves both without overlap."""
    check_split(split, SPLITS, task)
    if split == "test":
        return records
    order = list(range(len(records)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    held_out = set(order[: round(len(records) * VALIDATION_FRACTION)])
    return [record for position, record in enumerate(records) if (position in held_out) == (split == "validation")]


def seeded_cut(records: list[Record], split: str, shares: dict[str, float], task: str) -> list[Record]:
    """One split of a fixed seeded partition of `records` into disjoint splits of the given shares
    (summing to 1), cut from one seeded shuffle; file order is kept within a split."""
    check_split(split, tuple(shares), task)
    order = list(range(len(records)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    names = list(shares)
    bounds = [round(len(records) * math.fsum(shares[name] for name in names[:k])) for k in range(len(names) + 1)]
    position = names.index(split)
    chosen = set(order[bounds[position] : bounds[position + 1]])
    return [record for index, record in enumerate(records) if index in chosen]
