"""The eval figure: one bar per expert, its mean score ± the standard error of that mean."""

from __future__ import annotations

import math
import statistics

import pytest

from t2cli.engines.evaluate import EvalResult, ItemResult
from t2cli.errors import BadInputError
from t2cli.plots.evaluation import plot_eval
from tests.plots.helpers import check_png


def result(label: str, rewards: list[float]) -> EvalResult:
    items = [ItemResult(f"q{i}", "", r) for i, r in enumerate(rewards)]
    score = sum((r + 1) / 2 for r in rewards) / len(rewards)
    return EvalResult("arc", label, "choices", len(items), score, 0, 1.0, items)


def test_bars_are_the_mean_scores_with_their_standard_errors(tmp_path) -> None:
    results = [result("base", [1, -1, -1, 1, -1]), result("arc@1", [1, 1, 1, -1, 1]), result("one", [1])]
    data = plot_eval(results, tmp_path / "eval.png")
    check_png(tmp_path / "eval.png", 560, 360)
    assert data.labels == ("base", "arc@1", "one") and data.n == (5, 5, 1)
    assert data.mean == pytest.approx([r.score for r in results])
    assert data.stderr[0] == pytest.approx(statistics.stdev([1, 0, 0, 1, 0]) / math.sqrt(5))
    assert data.stderr[1] == pytest.approx(statistics.stdev([1, 1, 1, 0, 1]) / math.sqrt(5))
    assert data.stderr[2] == 0.0  # one item: no spread to estimate


def test_results_without_items_are_refused(tmp_path) -> None:
    empty = EvalResult("arc", "base", "choices", 0, 0.0, 0, 1.0, [])
    with pytest.raises(BadInputError, match="no per-item results"):
        plot_eval([empty], tmp_path / "eval.png")
