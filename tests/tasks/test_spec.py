"""User tasks from YAML specs: validation before loading, templates, and each scorer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.registry import get_task
from t2cli.tasks.spec import load_spec


def _spec(tmp_path: Path, rows: list[dict[str, object]], **fields: object) -> Path:
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    spec = {"name": "demo", "description": "a demo task", "data": "data.jsonl", "prompt": "Q: {q}", "answer": "a"}
    spec.update(fields)
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_exact_scorer_with_system_prompt(tmp_path: Path) -> None:
    path = _spec(tmp_path, [{"q": "Capital of France?", "a": "Paris"}], scorer="exact", system="Answer in one word.")
    task = get_task("jsonl", spec=path)
    [example] = task.load()
    assert (task.name, task.description, example.question, example.reference) == (
        "demo",
        "a demo task",
        "Q: Capital of France?",
        "Paris",
    )
    assert task.messages(example) == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Q: Capital of France?"},
    ]
    assert [task.score(example, c) for c in ("Paris", " paris. ", "Answer: **Paris**", "It is Paris")] == [
        1.0,
        1.0,
        1.0,
        -1.0,
    ]


def test_number_scorer_shares_the_gsm8k_logic(tmp_path: Path) -> None:
    task = get_task("jsonl", spec=_spec(tmp_path, [{"q": "2+2", "a": 4}], scorer="number"))
    [example] = task.load()
    assert task.score(example, "so it is 4.0") == 1.0
    assert task.score(example, "\\boxed{5}") == -1.0


def test_choice_scorer_with_a_choices_field(tmp_path: Path) -> None:
    rows = [{"q": "Pick the fruit", "options": ["stone", "apple", "car"], "a": "apple"}]
    task = get_task("jsonl", spec=_spec(tmp_path, rows, scorer="choice", choices="options", prompt="{q}\n{choices}"))
    [example] = task.load()
    assert example.question == "Pick the fruit\nA. stone\nB. apple\nC. car"
    assert (example.reference, example.answer_index, example.choices) == ("B", 1, ("stone", "apple", "car"))
    assert [task.score(example, c) for c in ("The answer is (B)", "apple", "C")] == [1.0, 1.0, -1.0]


def test_choice_scorer_with_letter_answers(tmp_path: Path) -> None:
    task = get_task("jsonl", spec=_spec(tmp_path, [{"q": "A, B or C?", "a": "c"}], scorer="choice"))
    [example] = task.load()
    assert task.score(example, "Answer: C") == 1.0


def test_regex_scorer_compares_the_last_group(tmp_path: Path) -> None:
    path = _spec(tmp_path, [{"q": "Which colour?", "a": "Blue"}], scorer="regex", pattern=r"Colour:\s*(\w+)")
    task = get_task("jsonl", spec=path)
    [example] = task.load()
    assert task.score(example, "Colour: red... no. Colour: blue") == 1.0
    assert task.score(example, "blue") == -1.0


def test_code_scorer_runs_the_tests_in_the_sandbox(tmp_path: Path) -> None:
    rows = [{"q": "Write double(x).", "a": "assert double(2) == 4\nassert double(-1) == -2"}]
    task = get_task("jsonl", spec=_spec(tmp_path, rows, scorer="code", timeout_s=5))
    [example] = task.load()
    right = "```python\ndef double(x):\n    return 2 * x\n```"
    assert task.score_many([example, example], [right, "def double(x):\n    return x + 2"]) == [1.0, -1.0]


def test_source_override_and_splits(tmp_path: Path) -> None:
    task = get_task("jsonl", spec=_spec(tmp_path, [{"q": "x", "a": "y"}], scorer="exact"))
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"q": f"q{n}", "a": "a"}) + "\n" for n in range(10)), encoding="utf-8")
    assert len(task.load(other, split="train")) == 9
    assert len(task.load(other, split="validation")) == 1


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"scorer": "fuzzy"}, "scorer 'fuzzy' is not one of"),
        ({"scorer": "exact", "colour": "red"}, "unknown field"),
        ({"scorer": "exact", "name": "Bad Name"}, "name 'Bad Name'"),
        ({"scorer": "exact", "prompt": ""}, "field 'prompt' is required"),
        ({"scorer": "exact", "prompt": "Q: {q"}, "not a valid template"),
        ({"scorer": "exact", "prompt": "Q: {q.attr}"}, "plain field name"),
        ({"scorer": "exact", "prompt": "Q: {q!r}"}, "plain field name"),
        ({"scorer": "regex"}, "field 'pattern' is required"),
        ({"scorer": "exact", "pattern": "(x)"}, "field 'pattern' is required by scorer 'regex'"),
        ({"scorer": "regex", "pattern": "("}, "not a valid regular expression"),
        ({"scorer": "regex", "pattern": "x"}, "needs a \\(group\\)"),
        ({"scorer": "exact", "choices": "options"}, "'choices' is allowed only"),
        ({"scorer": "exact", "timeout_s": 3}, "'timeout_s' is allowed only"),
        ({"scorer": "code", "timeout_s": -1}, "above 0 and at most 3600"),
        ({"scorer": "code", "timeout_s": float("inf")}, "above 0 and at most 3600"),
        ({"scorer": "code", "timeout_s": float("nan")}, "above 0 and at most 3600"),
        ({"scorer": "exact", "system": 3}, "field 'system' must be a non-empty string"),
        ({"scorer": "exact", "columns": ["q"]}, "columns must be a mapping of name: path"),
        ({"scorer": "exact", "columns": {"a b": "x"}}, "'a b' must be a plain name"),
        ({"scorer": "exact", "columns": {"q": "x..y"}}, "dotted path such as solution.final, got 'x..y'"),
        ({"scorer": "exact", "columns": {"q": 3}}, "q must map to a field or a dotted path"),
        ({"scorer": "exact", "splits": {"train": "train"}}, "splits applies to a whole Hub dataset"),
        ({"scorer": "exact", "data": "hf://datasets/o/n", "splits": {"dev": "x"}}, "'dev' is not one of t2's splits"),
        ({"scorer": "exact", "data": "hf://datasets/o/n", "splits": {"test": "a/b"}}, "must name one split"),
        ({"scorer": "exact", "data": "hf://datasets/o/n", "splits": {}}, "splits must map t2's splits"),
    ],
)
def test_spec_validation_errors(tmp_path: Path, fields: dict[str, object], problem: str) -> None:
    with pytest.raises(BadInputError, match=problem):
        get_task("jsonl", spec=_spec(tmp_path, [], **fields))


def test_unreadable_specs(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="task spec not found"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(BadInputError, match="bad.yaml is not valid YAML at line"):
        load_spec(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="YAML mapping"):
        load_spec(bad)


@pytest.mark.parametrize(
    ("row", "fields", "problem"),
    [
        ({"a": "x"}, {"scorer": "exact"}, "missing field 'q'"),
        ({"q": "x", "a": "many"}, {"scorer": "number"}, "not a number"),
        ({"q": "x", "a": "Z"}, {"scorer": "choice"}, "not a choice letter"),
        ({"q": "x", "a": 0, "o": ["only"]}, {"scorer": "choice", "choices": "o"}, "2 to 5 choices"),
    ],
)
def test_bad_rows_name_the_line(
    tmp_path: Path, row: dict[str, object], fields: dict[str, object], problem: str
) -> None:
    task = get_task("jsonl", spec=_spec(tmp_path, [row], **fields))
    with pytest.raises(BadInputError, match=rf"data\.jsonl:1: .*{problem}"):
        task.load()


def test_spec_may_not_take_a_built_in_name(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="built-in task"):
        get_task("jsonl", spec=_spec(tmp_path, [], scorer="exact", name="gsm8k"))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"name: &n demo\ndescription: *n\n", "anchors or aliases"),
        (b"name: demo\ndescription: \xff\xfe\n", "is not UTF-8 text"),
        (b"timeout_s: .inf\n", "field 'name' is required"),
    ],
)
def test_hostile_spec_files_are_one_line_bad_input(tmp_path: Path, content: bytes, problem: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    with pytest.raises(BadInputError, match=problem):
        load_spec(bad)


def test_special_files_as_spec_or_data_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="is not a regular file"):
        load_spec("/dev/zero")
    task = get_task("jsonl", spec=_spec(tmp_path, [], scorer="exact", data="/dev/zero"))
    with pytest.raises(BadInputError, match="/dev/zero is not a regular file"):
        task.load()


def test_columns_map_names_to_dotted_paths_in_each_row(tmp_path: Path) -> None:
    rows = [
        {"problem": {"text": "2+2?"}, "solution": {"final": 4, "steps": ["add"]}, "opts": {"t": ["3", "4"]}},
        {"problem": {"text": "3+3?"}, "solution": {"final": 6, "steps": []}, "opts": {"t": ["6", "7"]}},
    ]
    columns = {"question": "problem.text", "answer": "solution.final", "first": "opts.t.0"}
    path = _spec(tmp_path, rows, scorer="number", prompt="{question} (not {first})", answer="answer", columns=columns)
    examples = get_task("jsonl", spec=path).load()
    assert [(e.question, e.reference) for e in examples] == [("2+2? (not 3)", "4"), ("3+3? (not 6)", "6")]
    # answer and choices may name a dotted path without a column; so may a top-level key with dots in it.
    rows = [{"q": "Pick", "x": {"options": ["a", "b"], "key": 1}, "a.b": "kept"}]
    task = get_task("jsonl", spec=_spec(tmp_path, rows, scorer="choice", choices="x.options", answer="x.key"))
    [example] = task.load()
    assert (example.choices, example.answer_index) == (("a", "b"), 1)
    exact = get_task("jsonl", spec=_spec(tmp_path, rows, scorer="exact", answer="a.b"))
    assert exact.load()[0].reference == "kept"
    # A path a row lacks names the row and the path.
    missing = get_task("jsonl", spec=_spec(tmp_path, [{"q": "x"}], scorer="exact", columns={"a": "sol.final"}))
    with pytest.raises(BadInputError, match=r"data\.jsonl:1: .*missing field 'sol\.final'"):
        missing.load()
    listed = get_task("jsonl", spec=_spec(tmp_path, [{"q": "x", "a": 0, "o": "ab"}], scorer="choice", choices="o"))
    with pytest.raises(BadInputError, match="must be a list of choice texts"):
        listed.load()
