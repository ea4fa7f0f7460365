"""Task names -> task objects: the built-ins, `cls` over other tasks (t2cli.tasks.cls_task), and `jsonl` for
YAML specs (t2cli.tasks.spec).

Tasks are plug-ins (t2cli.plugins): each is one class (or factory) in a file of its own, registered in
one line below; other packages add theirs through the `t2cli.tasks` entry-point group.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2cli.errors import BadInputError, NotFoundError
from t2cli.plugins import PluginRegistry

if TYPE_CHECKING:
    from t2cli.tasks.base import Task

TASKS: PluginRegistry[Callable[..., Task]] = PluginRegistry(
    "task",
    "t2cli.tasks",
    {
        "gsm8k": "t2cli.tasks.gsm8k:Gsm8kTask",
        "math": "t2cli.tasks.competition_math:MathTask",
        "arc": "t2cli.tasks.arc:ArcTask",
        "mbpp": "t2cli.tasks.mbpp:MbppTask",
        "humaneval": "t2cli.tasks.humaneval:HumanEvalTask",
        "cls": "t2cli.tasks.cls_task:cls_task",
        "jsonl": "t2cli.tasks.spec:spec_task",
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
