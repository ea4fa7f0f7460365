"""How a batch went: routing decisions per expert (against known tasks, the confusion and accuracy),
and the mean score of the labelled lines, alone or paired with the base weights' scores."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from t2cli.adapt.bank import OTHER
from t2cli.adapt.routers import Decision


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


@dataclass(frozen=True)
class Mean:
    """A sample mean and its standard error (None below two values)."""

    n: int
    mean: float
    se: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mean": round(self.mean, 4), "se": None if self.se is None else round(self.se, 4)}


@dataclass(frozen=True)
class PairedScores:
    """Two scorings of the same lines: each one's mean, and the mean of their per-line differences
    (adapted − base), whose SE accounts for the pairing (lines that both get right cancel out)."""

    adapted: Mean
    base: Mean
    difference: Mean

    def to_dict(self) -> dict[str, dict[str, float | int | None]]:
        return {"adapted": self.adapted.to_dict(), "base": self.base.to_dict(), "difference": self.difference.to_dict()}


def mean_se(values: Sequence[float]) -> Mean | None:
    """Mean and standard error (sample standard deviation / √n) of `values`; None when empty."""
    return _mean(values) if values else None


def paired_scores(adapted: Sequence[float], base: Sequence[float]) -> PairedScores | None:
    """The paired comparison of two scorings of the same lines, in the same order; None when empty."""
    if len(adapted) != len(base):
        raise ValueError(f"paired scores need as many base scores as adapted ones, got {len(base)} and {len(adapted)}")
    if not adapted:
        return None
    differences = [a - b for a, b in zip(adapted, base, strict=True)]
    return PairedScores(_mean(adapted), _mean(base), _mean(differences))


def row_scores(rows: Sequence[Mapping[str, Any]]) -> Mean | None:
    """The mean score of a run's labelled lines (output rows with a `score`)."""
    return mean_se([row["score"] for row in rows if "score" in row])


def base_comparison(rows: Sequence[Mapping[str, Any]]) -> PairedScores | None:
    """The run's scores paired with the base weights' on the same lines (rows with `base_score`)."""
    paired = [row for row in rows if "score" in row and "base_score" in row]
    return paired_scores([row["score"] for row in paired], [row["base_score"] for row in paired])


def _mean(values: Sequence[float]) -> Mean:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return Mean(len(values), statistics.fmean(values), se)
