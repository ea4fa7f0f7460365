r"""MATH: \boxed{} extraction with nested braces and LaTeX answer normalisation (no sympy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2cli.errors import BadInputError
from t2cli.tasks.latex import answers_match, last_boxed, normalize_answer
from t2cli.tasks.registry import get_task


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{5}$.", "5"),
        ("first \\boxed{1}, finally \\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}"),
        ("\\fbox{x+1}", "x+1"),
        ("\\boxed 7$ done", "7"),
        ("\\boxed {3}", "3"),
        ("no box", None),
        ("\\boxed{\\frac{1}{2}", None),  # truncated: unbalanced braces
        ("\\boxed{}", ""),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("candidate", "reference"),
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac12", "\\frac{1}{2}"),
        ("\\frac12", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("0.5", "\\frac{1}{2}"),
        (".5", "0.5"),
        ("-\\frac{3}{4}", "-0.75"),
        ("5.0", "5"),
        ("2.50", "2.5"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("x = 3", "3"),
        ("90^\\circ", "90"),
        ("90°", "90"),
        ("\\$5", "5"),
        ("50\\%", "50"),
        ("10\\text{ cm}", "10"),
        ("10\\text{ square units}", "10"),
        ("3 \\mbox{inches}", "3"),
        ("\\text{(A)}", "(A)"),
        ("1{,}000", "1000"),
        ("1,000", "1000"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("\\!10", "10"),
        ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt{3}}{2}"),
    ],
)
def test_equivalent_answers_match(candidate: str, reference: str) -> None:
    assert answers_match(candidate, reference)


@pytest.mark.parametrize(
    ("candidate", "reference"),
    [
        ("\\frac{1}{3}", "0.33"),
        ("(1,2)", "(2,1)"),
        ("2", "-2"),
        ("x+1", "x-1"),
        ("\\text{feet}", "\\text{inches}"),  # bare unit words are answers, not removable units
        ("\\frac{1}{0}", "0"),
        ("", "5"),
    ],
)
def test_different_answers_do_not_match(candidate: str, reference: str) -> None:
    assert not answers_match(candidate, reference)


def test_normalize_is_idempotent_on_a_canonical_form() -> None:
    once = normalize_answer("\\dfrac{3}{4}\\text{ meters}")
    assert once == "\\frac{3}{4}" == normalize_answer(once)


def test_load_and_score(tmp_path: Path) -> None:
    rows = [
        {"problem": "What is $1+1$?", "solution": "Add: $\\boxed{2}$.", "level": "Level 1", "type": "Algebra"},
        {"problem": "Half?", "solution": "It is $\\boxed{\\dfrac{1}{2}}$.", "level": "Level 2", "type": "Algebra"},
    ]
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    task = get_task("math")
    first, second = task.load(path)
    assert (first.reference, second.reference) == ("2", "\\dfrac{1}{2}")
    assert first.meta["level"] == "Level 1" and "\\boxed{}" in first.question
    assert task.score(second, "so the answer is \\boxed{0.5}") == 1.0
    assert task.score(second, "so the answer is 0.5") == -1.0  # the answer must be boxed
    assert task.score(first, "\\boxed{3}") == -1.0
    assert task.score(first, task.reference_completion(first)) == 1.0


def test_solution_without_box_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "math.jsonl"
    path.write_text(json.dumps({"problem": "p", "solution": "no box"}) + "\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"math\.jsonl:1: .*boxed"):
        get_task("math").load(path)
