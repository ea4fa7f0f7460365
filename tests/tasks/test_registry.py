"""The task registry: names, options, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.base import Task
from t2cli.tasks.registry import get_task, resolve_task, task_names


def test_known_names() -> None:
    assert task_names() == ["gsm8k", "math", "arc", "mbpp", "humaneval", "cls", "jsonl"]


@pytest.mark.parametrize("name", ["gsm8k", "math", "arc", "mbpp", "humaneval", "cls"])
def test_built_ins_have_a_name_and_a_one_sentence_description(name: str) -> None:
    task = get_task(name)
    assert isinstance(task, Task)
    assert task.name == name
    assert task.description and "\n" not in task.description


def test_options_reach_the_task() -> None:
    assert get_task("arc", shuffle_seed=3).shuffle_seed == 3
    assert get_task("mbpp", timeout_s=2.5).timeout_s == 2.5


def test_errors_name_the_fix() -> None:
    with pytest.raises(NotFoundError, match="known tasks: gsm8k, math, arc"):  # exit 3, as README says
        get_task("gms8k")
    with pytest.raises(BadInputError, match="does not take colour; its options: shuffle_seed"):
        get_task("arc", colour="red")
    with pytest.raises(BadInputError, match="needs option\\(s\\) spec"):
        get_task("jsonl")


def test_resolve_task_reads_yaml_paths_as_specs(tmp_path: Path) -> None:
    spec = tmp_path / "mine.yaml"
    spec.write_text(
        "name: mine\ndescription: d\ndata: d.jsonl\nprompt: '{q}'\nanswer: a\nscorer: exact\n", encoding="utf-8"
    )
    assert resolve_task(spec).name == "mine"
    assert resolve_task(str(spec)).name == "mine"
    assert resolve_task("arc", shuffle_seed=1).name == "arc"
    with pytest.raises(NotFoundError, match="task spec not found"):
        resolve_task("missing.yml")
