"""Task names -> task objects: the built-ins, `cls` over other tasks, and `jsonl` for YAML specs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.arc import ArcTask
from t2cli.tasks.base import Task
from t2cli.tasks.classification import ClassificationTask
from t2cli.tasks.competition_math import MathTask
from t2cli.tasks.gsm8k import Gsm8kTask
from t2cli.tasks.humaneval import HumanEvalTask
from t2cli.tasks.mbpp import MbppTask
from t2cli.tasks.spec import JsonlTask, load_spec

DEFAULT_CLS_TASKS = ("gsm8k", "mbpp", "arc")  # math, code, reasoning: the paper's three experts


def _classification(
    tasks: Sequence[str | Task] = DEFAULT_CLS_TASKS,
    sources: Mapping[str, str | Path | None] | None = None,
    seed: int = 0,
) -> Task:
    members = [get_task(task) if isinstance(task, str) else task for task in tasks]
    return ClassificationTask(members, sources, seed)


def _jsonl(spec: str | Path, workers: int | None = None) -> Task:
    task_spec = load_spec(spec)
    if task_spec.name in _FACTORIES:
        raise BadInputError(f"{spec}: name {task_spec.name!r} is a built-in task; give the spec another name")
    return JsonlTask(task_spec, workers)


_FACTORIES: Mapping[str, Callable[..., Task]] = MappingProxyType(
    {
        "gsm8k": Gsm8kTask,
        "math": MathTask,
        "arc": ArcTask,
        "mbpp": MbppTask,
        "humaneval": HumanEvalTask,
        "cls": _classification,
        "jsonl": _jsonl,
    }
)


def task_names() -> list[str]:
    return list(_FACTORIES)


def resolve_task(name_or_spec: str | Path, **options: Any) -> Task:
    """What a --task value means: a path ending in .yaml/.yml is a user spec, `name:style` a task in one
    of its prompt styles (e.g. `arc:cloze`), anything else a task name."""
    if str(name_or_spec).endswith((".yaml", ".yml")):
        return get_task("jsonl", spec=name_or_spec, **options)
    name, _, style = str(name_or_spec).partition(":")
    return get_task(name, **options, **({"style": style} if style else {}))


def get_task(name: str, **options: Any) -> Task:
    """A task by name; options go to its constructor (e.g. arc: shuffle_seed; jsonl: spec=PATH)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise NotFoundError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
    except TypeError:
        accepted = ", ".join(signature.parameters) or "none"
        required = [key for key, parameter in signature.parameters.items() if parameter.default is parameter.empty]
        missing = [key for key in required if key not in options]
        problem = f"needs option(s) {', '.join(missing)}" if missing else f"does not take {', '.join(sorted(options))}"
        raise BadInputError(f"task {name!r} {problem}; its options: {accepted}") from None
    return factory(**options)
