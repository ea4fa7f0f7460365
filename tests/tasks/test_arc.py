"""ARC: letter extraction, numeric labels shown as letters, deterministic choice shuffling, split files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.choice import extract_choice
from t2cli.tasks.registry import get_task

TEXTS = ("salt water", "water", "a bacterial population", "sand")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("The answer is (B)", 1),
        ("B) water", 1),
        ("**C**", 2),
        ("Answer: d", 3),
        ("answer: D.", 3),
        ("The correct answer is option C because ...", 2),
        ("b", 1),
        ("(C)", 2),
        ("I think B is right", 1),
        ("a bacterial population", 2),  # just repeats one choice's text
        ("Salt water.", 0),
        ("It is water, of course", 1),
        ("It must be salt water", 0),  # "water" inside "salt water" does not count twice
        ("A) salt water\nB) water\nC) ...", None),  # several letters equally: ambiguous
        ("The answer is A. No wait, the answer is C.", None),
        ("The answer is a mystery", None),  # the article, not a letter
        ("A plant needs light", None),
        ("The answer is E", None),  # only four choices
        ("", None),
        ("I do not know", None),
        ("(B) fits, not (A), (B) again", 1),
    ],
)
def test_extract_choice(completion: str, expected: int | None) -> None:
    assert extract_choice(completion, len(TEXTS), TEXTS) == expected


def _arc_row(identifier: str, labels: str, key: str) -> dict[str, object]:
    choices = [{"text": f"option {label}", "label": label} for label in labels]
    return {"id": identifier, "question": {"stem": f"Question {identifier}?", "choices": choices}, "answerKey": key}


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_numeric_labels_are_shown_as_letters(tmp_path: Path) -> None:
    path = _write(tmp_path / "arc.jsonl", [_arc_row("q1", "1234", "3")])
    task = get_task("arc")
    [example] = task.load(path)
    assert example.question == (
        "Question q1?\n\nA. option 1\nB. option 2\nC. option 3\nD. option 4\n\n"
        "Answer with the letter of the correct choice."
    )
    assert (example.reference, example.answer_index, example.meta["labels"]) == ("C", 2, ["1", "2", "3", "4"])
    assert example.choices == ("option 1", "option 2", "option 3", "option 4")
    assert task.score(example, "The answer is C.") == 1.0
    assert task.score(example, "The answer is 3.") == -1.0
    assert task.score(example, task.reference_completion(example)) == 1.0


def test_shuffle_is_deterministic_and_spreads_the_answer(tmp_path: Path) -> None:
    rows = [_arc_row(f"q{n}", "ABCD", "A") for n in range(40)]
    path = _write(tmp_path / "arc.jsonl", rows)
    plain = get_task("arc").load(path)
    shuffled = get_task("arc", shuffle_seed=7).load(path)
    assert {e.reference for e in plain} == {"A"}
    letters = Counter(e.reference for e in shuffled)
    assert len(letters) == 4 and max(letters.values()) < 20  # a letter prior earns nothing
    assert shuffled == get_task("arc", shuffle_seed=7).load(path)
    assert shuffled != get_task("arc", shuffle_seed=8).load(path)
    for example in shuffled:
        assert example.choices[example.answer_index] == "option A"


def test_folder_source_picks_the_split_file(tmp_path: Path) -> None:
    for name, identifier in (("Train", "t"), ("Dev", "d"), ("Test", "x")):
        _write(tmp_path / f"ARC-Easy-{name}.jsonl", [_arc_row(identifier, "ABC", "B")])
    task = get_task("arc")
    assert [task.load(tmp_path, split=split)[0].id for split in ("train", "validation", "test")] == ["t", "d", "x"]
    _write(tmp_path / "ARC-Challenge-Test.jsonl", [_arc_row("c", "ABC", "B")])
    with pytest.raises(BadInputError, match="several test files"):
        task.load(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no ARC-\\*-Dev"):
        task.load(tmp_path / "empty", split="validation")
    with pytest.raises(NotFoundError, match="data not found"):
        task.load(tmp_path / "missing")
    with pytest.raises(NotFoundError, match="no arc data: .*ai2_arc.*no packaged copy exists; or pass --data PATH"):
        task.load()


@pytest.mark.parametrize(
    ("row", "problem"),
    [(_arc_row("q", "ABCD", "E"), "answerKey 'E'"), (_arc_row("q", "ABCDEF", "A"), "2 to 5 choices")],
)
def test_malformed_records(tmp_path: Path, row: dict[str, object], problem: str) -> None:
    with pytest.raises(BadInputError, match=problem):
        get_task("arc").load(_write(tmp_path / "arc.jsonl", [row]))


def test_text_style_lists_unlettered_choices_and_is_answered_with_a_choice_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "arc.jsonl", [_arc_row("q1", "ABCD", "B")])
    task = get_task("arc", style="text")
    [example] = task.load(path)
    assert example.question == (
        "Question q1?\n\nChoices:\n- option A\n- option B\n- option C\n- option D\n\n"
        "Reply with the correct choice, copied exactly."
    )
    assert task.uses_chat_template and task.reference_completion(example) == "option B"
    assert task.score(example, "option B") == 1.0 and task.score(example, "The answer is option B.") == 1.0
    assert task.score(example, "option C") == -1.0
    # The other styles keep their own answers: a letter sentence, and the bare text after a cloze question.
    assert get_task("arc").reference_completion(example) == "The answer is B."
    assert not get_task("arc", style="cloze").uses_chat_template
