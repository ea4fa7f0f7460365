"""How pass 1 routed a batch: the confusion matrix (true task × chosen category) and the routing distribution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from t2cli.plots.style import COLORS, drawing

if TYPE_CHECKING:
    from t2cli.adapt.report import RoutingReport


@dataclass(frozen=True)
class RoutingPlot:
    """counts[i][j]: prompts of true task truths[i] routed to category chosen[j]; experts/prompts: the bars."""

    truths: tuple[str, ...]
    chosen: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    experts: tuple[str, ...]
    prompts: tuple[int, ...]
    accuracy: float | None


def routing_plot_data(report: RoutingReport) -> RoutingPlot:
    truths = tuple(sorted(report.confusion))
    labels = {label for row in report.confusion.values() for label in row}
    # Every true task is a column too (0 where never chosen), in the rows' order, so hits sit on the diagonal.
    chosen = truths + tuple(sorted(labels - set(truths)))
    counts = tuple(tuple(report.confusion[t].get(label, 0) for label in chosen) for t in truths)
    ranked = sorted(report.experts.items(), key=lambda item: (-item[1], item[0]))
    return RoutingPlot(
        truths=truths,
        chosen=chosen,
        counts=counts,
        experts=tuple(name for name, _ in ranked),
        prompts=tuple(count for _, count in ranked),
        accuracy=report.accuracy,
    )


def plot_routing(report: RoutingReport, path: Path, *, title: str = "routing") -> RoutingPlot:
    """Confusion matrix (colour: share of the row, text: count) beside the prompts per expert; returns the data."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    data = routing_plot_data(report)
    with drawing(path, 10 if data.truths else 5, 4) as fig:
        if data.truths:
            matrix_axes, bar_axes = fig.subplots(1, 2)
            counts = np.array(data.counts, dtype=float)
            shares = counts / counts.sum(axis=1, keepdims=True)
            image = matrix_axes.imshow(shares, vmin=0, vmax=1, cmap="Blues", aspect="auto")
            for (i, j), count in np.ndenumerate(counts):
                colour = "white" if shares[i, j] > 0.6 else "black"
                matrix_axes.text(j, i, str(int(count)), ha="center", va="center", color=colour)
            matrix_axes.set_xticks(range(len(data.chosen)), data.chosen, rotation=30, ha="right")
            matrix_axes.set_yticks(range(len(data.truths)), data.truths)
            matrix_axes.set_xlabel("chosen category")
            matrix_axes.set_ylabel("true task")
            matrix_axes.grid(False)
            accuracy = f" (accuracy {data.accuracy:.0%})" if data.accuracy is not None else ""
            matrix_axes.set_title(f"{title}: true task × chosen{accuracy}")
            fig.colorbar(image, ax=matrix_axes, label="share of the true task's prompts")
        else:
            bar_axes = fig.subplots()
        bar_axes.bar(range(len(data.experts)), data.prompts, color=COLORS[0])
        bar_axes.set_xticks(range(len(data.experts)), data.experts, rotation=30, ha="right")
        bar_axes.set_ylabel("prompts")
        bar_axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        bar_axes.set_title("prompts per expert")
    return data
