"""Tasks: data loading, prompts and rewards for the built-in benchmarks and user YAML specs."""

from t2cli.tasks.base import Example, Task
from t2cli.tasks.classification import (
    ClassificationTask,
    classification_messages,
    classification_prompt,
    extract_label,
)
from t2cli.tasks.registry import get_task, resolve_task, task_names
from t2cli.tasks.spec import JsonlTask, TaskSpec, load_spec

__all__ = [
    "ClassificationTask",
    "Example",
    "JsonlTask",
    "Task",
    "TaskSpec",
    "classification_messages",
    "classification_prompt",
    "extract_label",
    "get_task",
    "load_spec",
    "resolve_task",
    "task_names",
]
