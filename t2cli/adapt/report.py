"""How a batch went: routing decisions per expert (against known tasks, the confusion and accuracy),
and the mean score of the labelled lines, alone or paired with the base weights' scores."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from t2cli.adapt.bank import OTHER
from t2cli.adapt.routers import Decision
from t2cli.stats import Mean, PairedScores, mean_se, paired_scores


@dataclass(frozen=True)
class RoutingReport:
    """How a batch was routed: decisions per expert, and against known tasks the confusion and accuracy."""

    experts: dict[str, int]
    confusion: dict[str, dict[str, int]]  # true category -> chosen label -> count
    accuracy: float | None
    labelled: int


def routing_report(
    decisions: Sequence[Decision], tasks: Sequence[str | None], categories: Sequence[str]
) -> RoutingReport:
    """Tasks outside the categories count as `other` (the base model is the right pick for them)."""
    experts = Counter(d.expert or "base" for d in decisions)
    confusion: dict[str, dict[str, int]] = {}
    correct = labelled = 0
    for decision, task in zip(decisions, tasks, strict=True):
        if task is None:
            continue
        truth = task if task in categories else OTHER
        row = confusion.setdefault(truth, {})
        row[decision.label] = row.get(decision.label, 0) + 1
        labelled += 1
        correct += decision.label == truth
    return RoutingReport(dict(experts), confusion, correct / labelled if labelled else None, labelled)


def row_scores(rows: Sequence[Mapping[str, Any]]) -> Mean | None:
    """The mean score of a run's labelled lines (output rows with a `score`)."""
    return mean_se([row["score"] for row in rows if "score" in row])


def base_comparison(rows: Sequence[Mapping[str, Any]]) -> PairedScores | None:
    """The run's scores paired with the base weights' on the same lines (rows with `base_score`)."""
    paired = [row for row in rows if "score" in row and "base_score" in row]
    return paired_scores([row["score"] for row in paired], [row["base_score"] for row in paired])
