"""`t2 eval` side by side: each expert's mean score with the standard error of that mean as the error bar."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from t2cli.errors import BadInputError
from t2cli.plots.style import COLORS, drawing
from t2cli.stats import mean_se

if TYPE_CHECKING:
    from t2cli.engines.evaluate import EvalResult


@dataclass(frozen=True)
class EvalBars:
    labels: tuple[str, ...]
    n: tuple[int, ...]
    mean: tuple[float, ...]
    stderr: tuple[float, ...]  # sample standard deviation / √n of the item scores (0 for a single item)


def eval_bars(results: Sequence[EvalResult]) -> EvalBars:
    """Item scores are (reward + 1) / 2, the scale of EvalResult.score."""
    if any(not r.items for r in results) or not results:
        raise BadInputError("no per-item results to plot; evaluate at least one example")
    stats = [mean_se([(item.reward + 1) / 2 for item in r.items]) for r in results]
    return EvalBars(
        labels=tuple(r.label for r in results),
        n=tuple(s.n for s in stats),
        mean=tuple(s.mean for s in stats),
        stderr=tuple(s.se or 0.0 for s in stats),
    )


def plot_eval(results: Sequence[EvalResult], path: Path) -> EvalBars:
    """One bar per expert (the base too when evaluated), ± one standard error; returns what was drawn."""
    data = eval_bars(results)
    first = results[0]
    with drawing(path, max(4.0, 1.2 * len(data.labels) + 2), 3.6) as fig:
        axes = fig.subplots()
        positions = range(len(data.labels))
        colors = [COLORS[i % len(COLORS)] for i in positions]
        axes.bar(positions, data.mean, yerr=data.stderr, capsize=4, color=colors)
        for x, mean, stderr in zip(positions, data.mean, data.stderr, strict=True):
            axes.text(x, mean + stderr + 0.02, f"{mean:.3f}", ha="center", va="bottom")
        axes.set_xticks(positions, [f"{label}\n(n={n})" for label, n in zip(data.labels, data.n, strict=True)])
        axes.set_ylim(0, 1.1)
        axes.set_ylabel("score (± 1 standard error)")
        axes.set_title(f"{first.task} ({first.mode})")
    return data
