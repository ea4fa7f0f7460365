"""Code tasks: code extraction, MBPP / MBPP+ / HumanEval programs, splits, and sandbox scoring."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from t2cli.errors import BadInputError, EngineError
from t2cli.sandbox import SandboxResult
from t2cli.tasks.programs import extract_code
from t2cli.tasks.registry import get_task

ADD = "def add(a, b):\n    return a + b\n"


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (f"Here you go:\n```python\n{ADD}```\nDone.", ADD),
        (f"```py\n{ADD}```", ADD),
        (f"```\n{ADD}```", ADD),
        (f"```python\nprint(add(1, 2))\n```\nand\n```python\n{ADD}```", ADD),  # the block with a def wins
        (f"```bash\npip install x\n```\n```python\n{ADD}```", ADD),
        (f"```python\n{ADD}", ADD),  # unterminated block
        (f"{ADD}```\nmore text", ADD),  # the prompt opened the block
        (f"Here it is:\n```\n{ADD}", ADD),  # prose before an unterminated block is not code
        (ADD, ADD),
    ],
)
def test_extract_code(completion: str, expected: str) -> None:
    assert extract_code(completion).strip() == expected.strip()


def _mbpp_rows() -> list[dict[str, object]]:
    return [
        {
            "task_id": task_id,
            "text": "Write a function to add two numbers.",
            "code": "def add(a, b):\r\n\treturn a + b",
            "test_list": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"],
            "test_setup_code": "",
            "challenge_test_list": [],
        }
        for task_id in (5, 20, 520, 700)
    ]


def test_mbpp_splits_by_task_id(tmp_path: Path) -> None:
    path = _write(tmp_path / "mbpp.jsonl", _mbpp_rows())
    task = get_task("mbpp")
    ids = {split: [e.id for e in task.load(path, split=split)] for split in ("prompt", "test", "validation", "train")}
    assert ids == {"prompt": ["mbpp/5"], "test": ["mbpp/20"], "validation": ["mbpp/520"], "train": ["mbpp/700"]}


def test_mbpp_prompt_shows_one_test_and_scores_in_the_sandbox(tmp_path: Path) -> None:
    rows = _mbpp_rows()[1:2]
    rows[0]["test_setup_code"] = "OFFSET = 0"
    rows[0]["test_list"] = ["assert add(1, 2) == 3 + OFFSET", "assert add(-1, 1) == 0"]
    task = get_task("mbpp", timeout_s=5)
    [example] = task.load(_write(tmp_path / "mbpp.jsonl", rows))
    assert "assert add(1, 2) == 3 + OFFSET" in example.question
    assert "assert add(-1, 1) == 0" not in example.question  # one example test, as in the paper
    assert "```python" in example.question
    right = f"```python\n{ADD}```"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    endless = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    assert task.score_many([example] * 4, [right, wrong, "no code at all", task.reference_completion(example)]) == [
        1.0,
        -1.0,
        -1.0,
        1.0,
    ]
    assert get_task("mbpp", timeout_s=1).score(example, endless) == -1.0
    assert task.plain_prompt(example).endswith("```python\n")


def test_mbpp_plus_uses_the_assertion_field_and_its_split(tmp_path: Path) -> None:
    rows = [
        {
            "task_id": f"Mbpp/{n}",
            "prompt": '"""\nWrite a function to add two numbers.\n"""',
            "entry_point": "add",
            "canonical_solution": ADD,
            "base_input": [[1, 2]],
            "atol": 0,
            "assertion": "\nassert math.isclose(add(1, 2), 3)\nassert add(2, 2) == 4\n",
        }
        for n in range(305)
    ]
    path = _write(tmp_path / "MbppPlus.jsonl", rows)
    task = get_task("mbpp")
    sizes = {split: len(task.load(path, split=split)) for split in ("train", "validation", "test")}
    assert sizes == {"train": 200, "validation": 100, "test": 5}
    example = task.load(path, split="test")[0]
    assert example.id == "mbpp/Mbpp/300"
    assert example.question.startswith("You are an expert Python programmer, and here is your task: Write a function")
    assert "assert math.isclose(add(1, 2), 3)" in example.question
    assert task.score_many([example, example], [ADD, "def add(a, b):\n    return 3\n"]) == [1.0, -1.0]
    with pytest.raises(BadInputError, match="MBPP\\+ format"):
        task.load(path, split="prompt")


def test_mbpp_plus_without_assertion_compares_with_the_canonical_solution(tmp_path: Path) -> None:
    row = {
        "task_id": "Mbpp/1",
        "prompt": "'''\nAdd two numbers.\n'''",
        "entry_point": "add",
        "canonical_solution": ADD,
        "base_input": [[1, 2], [[1], [2]], [0.1, 0.2]],
        "atol": 1e-9,
    }
    task = get_task("mbpp")
    [example] = task.load(_write(tmp_path / "plus.jsonl", [row]), split="train")
    assert "Name the function add." in example.question
    assert task.score_many([example] * 2, [ADD, "def add(a, b):\n    return b + a if a != 1 else 0\n"]) == [1.0, -1.0]


def _humaneval_row() -> dict[str, object]:
    prompt = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n'
    test = "\n\ndef check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n"
    solution = "    return sum(xs)\n"
    return {
        "task_id": "HumanEval/0",
        "prompt": prompt,
        "entry_point": "total",
        "canonical_solution": solution,
        "test": test,
    }


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("    return sum(xs)\n", 1.0),  # a body, as a base model continues the prompt
        ("    return sum(xs)\n\n\nprint(total([1]))\ninput()\n", 1.0),  # cut where code returns to column 0
        ("return sum(xs)", 1.0),  # a body that lost its indentation
        ("```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```", 1.0),  # uses the prompt's import
        ("```python\ndef total(xs):\n    return 0\n```", -1.0),
        ("    return len(xs)\n", -1.0),
    ],
)
def test_humaneval_programs(tmp_path: Path, completion: str, reward: float) -> None:
    path = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(_humaneval_row()) + "\n")
    task = get_task("humaneval", timeout_s=5)
    [example] = task.load(path)
    assert task.score(example, completion) == reward


def test_humaneval_prompts_and_reference(tmp_path: Path) -> None:
    task = get_task("humaneval")
    [example] = task.load(_write(tmp_path / "he.jsonl", [_humaneval_row()]))
    assert task.plain_prompt(example) == _humaneval_row()["prompt"]
    assert "```python\nfrom typing import List" in example.question
    assert task.score(example, task.reference_completion(example)) == 1.0
    with pytest.raises(BadInputError, match="use one of: test"):
        task.load(tmp_path / "he.jsonl", split="train")


def test_sandbox_failure_is_an_engine_error_not_a_reward(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(programs: list[str], **options: object) -> list[SandboxResult]:
        return [SandboxResult(False, "error", 120, "", "t2-sandbox: setup failed: PermissionError()", 0.0)]

    monkeypatch.setattr("t2cli.tasks.programs.run_many", broken)
    task = get_task("mbpp")
    [example] = task.load(_write(tmp_path / "mbpp.jsonl", _mbpp_rows()[1:2]))
    with pytest.raises(EngineError, match="setup failed"):
        task.score(example, ADD)


def test_mismatched_lengths_are_rejected(tmp_path: Path) -> None:
    task = get_task("mbpp")
    [example] = task.load(_write(tmp_path / "mbpp.jsonl", _mbpp_rows()[1:2]))
    with pytest.raises(BadInputError, match="one completion per example"):
        task.score_many([example], [])


def test_mbpp_record_without_task_id_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"mbpp\.jsonl:1: .*task_id"):
        get_task("mbpp").load(_write(tmp_path / "mbpp.jsonl", [{"text": "t", "code": "", "test_list": []}]))
