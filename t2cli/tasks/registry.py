"""Task names -> task objects: the built-ins, `cls` over other tasks, and `jsonl` for YAML specs.

Tasks are plug-ins (t2cli.plugins): each is one class (or factory) in a file of its own, registered in
one line below; other packages add theirs through the `t2cli.tasks` entry-point group.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2cli.errors import BadInputError, NotFoundError
from t2cli.plugins import PluginRegistry

if TYPE_CHECKING:
    from t2cli.tasks.base import Task

DEFAULT_CLS_TASKS = ("gsm8k", "mbpp", "arc")  # math, code, reasoning: the paper's three experts


def _classification(
    tasks: Sequence[str | Task] = DEFAULT_CLS_TASKS,
    sources: Mapping[str, str | Path | None] | None = None,
    seed: int = 0,
) -> Task:
    from t2cli.tasks.classification import ClassificationTask

    members = [get_task(task) if isinstance(task, str) else task for task in tasks]
    return ClassificationTask(members, sources, seed)


def _jsonl(spec: str | Path, workers: int | None = None) -> Task:
    from t2cli.tasks.spec import JsonlTask, load_spec

    task_spec = load_spec(spec)
    if task_spec.name in TASKS:
        raise BadInputError(f"{spec}: name {task_spec.name!r} is a built-in task; give the spec another name")
    return JsonlTask(task_spec, workers)


TASKS: PluginRegistry[Callable[..., Task]] = PluginRegistry(
    "task",
    "t2cli.tasks",
    {
        "gsm8k": "t2cli.tasks.gsm8k:Gsm8kTask",
        "math": "t2cli.tasks.competition_math:MathTask",
        "arc": "t2cli.tasks.arc:ArcTask",
        "mbpp": "t2cli.tasks.mbpp:MbppTask",
        "humaneval": "t2cli.tasks.humaneval:HumanEvalTask",
        "cls": "t2cli.tasks.registry:_classification",
        "jsonl": "t2cli.tasks.registry:_jsonl",
    },
)


def task_names() -> list[str]:
    return TASKS.names()


def resolve_task(name_or_spec: str | Path, **options: Any) -> Task:
    """What a --task value means: a path ending in .yaml/.yml is a user spec, `name:style` a task in one
    of its prompt styles (e.g. `arc:cloze`), anything else a task name."""
    if str(name_or_spec).endswith((".yaml", ".yml")):
        return get_task("jsonl", spec=name_or_spec, **options)
    name, _, style = str(name_or_spec).partition(":")
    return get_task(name, **options, **({"style": style} if style else {}))


def get_task(name: str, **options: Any) -> Task:
    """A task by name; options go to its constructor (e.g. arc: shuffle_seed; jsonl: spec=PATH)."""
    if name not in TASKS:
        raise NotFoundError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    factory = TASKS.get(name)
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
