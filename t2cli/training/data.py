"""A task's training and validation examples, and the hash that identifies them in provenance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from t2cli.errors import BadInputError
from t2cli.tasks.base import Example, Task

if TYPE_CHECKING:
    from t2cli.experts.registry import Registry


def data_sha256(examples: Sequence[Example]) -> str:
    """Identifies the training data by content (ids, questions, references), not by file path."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.id, example.question, example.reference], default=str).encode())
    return digest.hexdigest()


def training_data(
    task_name: str, data: str | None, seed: int, registry: Registry, model_slug: str, experts: str | None
) -> tuple[Task, list[Example], list[Example]]:
    """The task with its train and validation examples.

    ARC's choices are shuffled (seeded) so that a preference for one letter earns nothing. The
    classification task `cls` is built from the experts named in `experts`: their manifests give
    the categories (their tasks) and the data each was trained on.
    """
    from t2cli.tasks.registry import get_task, resolve_task

    if task_name == "cls":
        if not experts:
            raise BadInputError("--task cls needs --experts a,b,c: the experts whose tasks are the categories")
        members, sources = [], {}
        for spec in experts.split(","):
            manifest = registry.resolve(spec.strip(), model_slug).manifest()
            if not manifest.task:
                raise BadInputError(f"expert {manifest.ref} records no task; it cannot be a category of cls")
            members.append(resolve_task(manifest.task, **({"shuffle_seed": seed} if manifest.task == "arc" else {})))
            sources[manifest.task] = manifest.provenance.get("data")
        task = get_task("cls", tasks=members, sources=sources, seed=seed)
        data = None
    else:
        task = resolve_task(task_name, **({"shuffle_seed": seed} if task_name == "arc" else {}))
    return task, task.load(data, "train"), task.load(data, "validation")
