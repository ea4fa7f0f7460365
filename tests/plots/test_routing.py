"""The routing figure: confusion matrix (true task × chosen category) and prompts per expert."""

from __future__ import annotations

from t2cli.adapt.report import routing_report
from t2cli.adapt.routers import Decision
from t2cli.plots.routing import plot_routing
from tests.plots.helpers import check_png


def decide(label: str) -> Decision:
    return Decision(None if label == "other" else f"{label}@1", None, label, {})


def test_confusion_counts_and_distribution_are_the_reports(tmp_path) -> None:
    labels = ["gsm8k", "gsm8k", "arc", "mbpp", "arc", "other", "gsm8k"]
    tasks = ["gsm8k", "gsm8k", "arc", "arc", "mbpp", "chitchat", None]
    report = routing_report([decide(label) for label in labels], tasks, ["arc", "gsm8k", "mbpp"])
    data = plot_routing(report, tmp_path / "routing.png")
    check_png(tmp_path / "routing.png", 1000, 400)
    assert data.truths == ("arc", "gsm8k", "mbpp", "other")
    assert data.chosen == ("arc", "gsm8k", "mbpp", "other")  # hits on the diagonal
    assert data.counts == ((1, 0, 1, 0), (0, 2, 0, 0), (1, 0, 0, 0), (0, 0, 0, 1))
    for i, truth in enumerate(data.truths):
        assert dict(zip(data.chosen, data.counts[i], strict=True)) == {
            label: report.confusion[truth].get(label, 0) for label in data.chosen
        }
    assert dict(zip(data.experts, data.prompts, strict=True)) == report.experts
    assert data.experts[0] == "gsm8k@1" and data.accuracy == report.accuracy == 4 / 6


def test_unlabelled_prompts_draw_the_distribution_alone(tmp_path) -> None:
    report = routing_report([decide("arc"), decide("other")], [None, None], ["arc"])
    data = plot_routing(report, tmp_path / "routing.png")
    check_png(tmp_path / "routing.png", 500, 400)
    assert data.truths == () and data.counts == () and data.accuracy is None
    assert data.experts == ("arc@1", "base") and data.prompts == (1, 1)
