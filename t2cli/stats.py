"""Sample statistics the reports share: a mean with its standard error, and paired differences."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


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


def _mean(values: Sequence[float]) -> Mean:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return Mean(len(values), statistics.fmean(values), se)
