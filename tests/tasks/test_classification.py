"""The cls task: balanced seeded sampling over member tasks and `other`, the routing prompt, label extraction."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from t2cli.errors import BadInputError
from t2cli.tasks.base import Task
from t2cli.tasks.classification import ClassificationTask, classification_messages, extract_label
from t2cli.tasks.registry import get_task

NAMES = ["gsm8k", "math", "mbpp", "my-task"]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("Category: math", "math"),
        ("category: **GSM8K**", "gsm8k"),
        ("The category is mbpp.", "mbpp"),
        ("\\boxed{math}", "math"),
        ("my-task", "my-task"),
        ("This is a math question.", "math"),
        ("Category: math. (Not gsm8k.)", "math"),  # the explicit statement wins over mentions
        ("math or gsm8k?", None),
        ("Category: math\nCategory: mbpp", None),
        ("mathematics", None),
        ("my-task-2", None),
        ("", None),
    ],
)
def test_extract_label(completion: str, expected: str | None) -> None:
    assert extract_label(completion, NAMES) == expected


def test_classification_messages_list_every_category() -> None:
    [message] = classification_messages("What is 2+2?", [("gsm8k", "word problems"), ("mbpp", "code")])
    assert message["role"] == "user"
    content = message["content"]
    assert "- gsm8k: word problems\n- mbpp: code" in content
    assert "What is 2+2?" in content and "Category: NAME" in content


def _sources(tmp_path: Path) -> dict[str, Path]:
    gsm8k = tmp_path / "gsm8k.jsonl"
    gsm8k.write_text("".join(json.dumps({"question": f"g{n}", "answer": f"#### {n}"}) + "\n" for n in range(10)))
    math = tmp_path / "math.jsonl"
    math.write_text("".join(json.dumps({"problem": f"m{n}", "solution": f"\\boxed{{{n}}}"}) + "\n" for n in range(4)))
    return {"gsm8k": gsm8k, "math": math}


def test_sampling_is_balanced_and_seeded(tmp_path: Path) -> None:
    task = get_task("cls", tasks=["gsm8k", "math"], sources=_sources(tmp_path), seed=3)
    examples = task.load()
    assert Counter(e.reference for e in examples) == {"gsm8k": 4, "math": 4, "other": 4}
    assert [name for name, _ in task.categories] == ["gsm8k", "math", "other"]
    assert examples == task.load()
    assert examples != get_task("cls", tasks=["gsm8k", "math"], sources=_sources(tmp_path), seed=4).load()
    limited = task.load(limit=4)
    assert Counter(e.reference for e in limited) == {"gsm8k": 2, "math": 1, "other": 1}


def test_examples_prompt_and_score(tmp_path: Path) -> None:
    task = get_task("cls", tasks=["gsm8k", "math"], sources=_sources(tmp_path))
    example = next(e for e in task.load() if e.reference == "math")
    assert example.id.startswith("math/math/")
    assert any(f"m{n}" in example.meta["request"] for n in range(4))  # the bare problem, in a user's phrasing
    assert "\\boxed" not in example.meta["request"]  # no task instruction
    assert task.messages(example) == classification_messages(example.meta["request"], task.categories)
    assert task.messages(example)[-1]["content"] == example.question
    assert task.score(example, "Category: math") == 1.0
    assert task.score(example, "Category: gsm8k") == -1.0
    assert task.score(example, task.reference_completion(example)) == 1.0


def test_bad_configurations(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="at least two different tasks"):
        ClassificationTask([get_task("gsm8k"), get_task("gsm8k")])
    with pytest.raises(BadInputError, match="not among the cls tasks"):
        get_task("cls", tasks=["gsm8k", "math"], sources={"arc": "x"})
    with pytest.raises(BadInputError, match="everything else"):
        ClassificationTask([get_task("gsm8k"), _Named("other")])
    with pytest.raises(BadInputError, match="sources="):
        get_task("cls", tasks=["gsm8k", "math"]).load(tmp_path / "x.jsonl")


class _Named(Task):
    def __init__(self, name: str) -> None:
        self.name, self.description = name, "a task"

    def load(self, source=None, split="test", limit=None) -> list:
        return []

    def score(self, example, completion: str) -> float:
        return 0.0
