"""How a batch was routed: decisions per expert and, against known tasks, the confusion and accuracy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
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
