"""The `cls` task: which of other tasks (or `other`) a request belongs to, the classifier router's training task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from t2cli.tasks.base import Task
from t2cli.tasks.classification import ClassificationTask
from t2cli.tasks.registry import get_task

DEFAULT_CLS_TASKS = ("gsm8k", "mbpp", "arc")  # math, code, reasoning: the paper's three experts


def cls_task(
    tasks: Sequence[str | Task] = DEFAULT_CLS_TASKS,
    sources: Mapping[str, str | Path | None] | None = None,
    seed: int = 0,
) -> Task:
    """The categories are the named (or given) tasks, then `other`."""
    members = [get_task(task) if isinstance(task, str) else task for task in tasks]
    return ClassificationTask(members, sources, seed)
