"""Batch reports: routing accuracy against known tasks, mean scores with SE, paired differences."""

from __future__ import annotations

import math

import pytest

from t2cli.adapt.report import base_comparison, routing_report, row_scores
from t2cli.adapt.routers import Decision
from t2cli.stats import Mean, mean_se, paired_scores


def test_mean_and_standard_error_of_planted_scores() -> None:
    summary = mean_se([1.0, 0.0, 1.0, 1.0])
    assert summary is not None
    assert summary.n == 4 and summary.mean == pytest.approx(0.75)
    assert summary.se == pytest.approx(0.5 / 2)  # sample sd 0.5, over √4
    assert mean_se([0.5]) == Mean(1, 0.5, None)
    assert mean_se([]) is None


def test_paired_difference_uses_the_pairing() -> None:
    adapted, base = [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]
    paired = paired_scores(adapted, base)
    assert paired is not None
    assert paired.adapted.mean == pytest.approx(0.75) and paired.base.mean == pytest.approx(0.25)
    assert paired.difference.mean == pytest.approx(0.5)
    assert paired.difference.se == pytest.approx(math.sqrt(1 / 3) / 2)  # differences 1, 0, 0, 1
    # A constant gain on every line is certain, however much the lines differ from each other.
    shifted = paired_scores([0.2, 0.9, 0.5], [0.1, 0.8, 0.4])
    assert shifted is not None
    assert shifted.difference.mean == pytest.approx(0.1) and shifted.difference.se == pytest.approx(0.0, abs=1e-12)
    assert shifted.base.se is not None and shifted.base.se > 0.1
    assert shifted.to_dict()["difference"] == {"n": 3, "mean": 0.1, "se": 0.0}
    assert paired_scores([], []) is None
    with pytest.raises(ValueError, match="as many base scores"):
        paired_scores([1.0], [])


def test_routing_report_counts_unknown_tasks_as_other() -> None:
    decisions = [
        Decision("arc@1", None, "arc", {}),
        Decision(None, None, "other", {}),
        Decision(None, None, "other", {}),
    ]
    report = routing_report(decisions, ["arc", "chitchat", "arc"], ["arc", "other"])
    assert report.labelled == 3 and report.accuracy == pytest.approx(2 / 3)
    assert report.confusion == {"arc": {"arc": 1, "other": 1}, "other": {"other": 1}}
    assert report.experts == {"arc@1": 1, "base": 2}


def test_run_rows_give_the_labelled_scores_and_the_comparison() -> None:
    rows = [
        {"completion": "a", "score": 1.0, "base_score": 0.0},
        {"completion": "b"},  # unlabelled: in neither mean
        {"completion": "c", "score": 0.0, "base_score": 0.0},
        {"completion": "d", "score": 1.0},  # not compared (e.g. run without --compare)
    ]
    scores = row_scores(rows)
    assert scores is not None and scores.n == 3 and scores.mean == pytest.approx(2 / 3)
    compared = base_comparison(rows)
    assert compared is not None and compared.adapted.n == 2
    assert (compared.adapted.mean, compared.base.mean, compared.difference.mean) == pytest.approx((0.5, 0.0, 0.5))
    assert row_scores([{"completion": "x"}]) is None and base_comparison(rows[3:]) is None
