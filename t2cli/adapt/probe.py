"""A probe: multinomial logistic regression on a request's mean hidden state at an early layer.

Pass 1 of `--adapt probe` (t2cli.adapt.strategies.probe) reads the base model's hidden states after its
first L decoder layers over the request's first N tokens (t2cli.engines.early_exit), averages them, and
this head names the category. Its probabilities are calibrated (one temperature fitted on held-out
validation requests: Guo et al. 2017, "On calibration of modern neural networks"), and a request whose
top probability is under the probe's threshold keeps the base weights (`other`).

Fitting is full-batch L-BFGS on standardised features with an L2 penalty chosen on the validation
requests: a few seconds for a few thousand requests of width 576 on 2 cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

# L2 penalties tried (on the mean cross-entropy); the one with the lowest validation loss is kept.
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1)
# Confidence thresholds tried; the lowest with the best validation accuracy is kept.
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)
# Scales smaller than this (a constant feature) divide by this instead.
MIN_SCALE = 1e-6


@dataclass(frozen=True)
class ProbeHead:
    """Standardisation (mean, scale), the regression (weight: classes × width, bias) and the temperature."""

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    temperature: float = 1.0

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits, one row per feature row."""
        return ((features.float() - self.mean) / self.scale) @ self.weight.T + self.bias

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Calibrated category probabilities, one row per feature row."""
        return torch.softmax(self.logits(features) / self.temperature, dim=-1)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The head as stored (the tensors of a probe's z.safetensors)."""
        return {
            "mean": self.mean.float().contiguous(),
            "scale": self.scale.float().contiguous(),
            "weight": self.weight.float().contiguous(),
            "bias": self.bias.float().contiguous(),
            "temperature": torch.tensor(float(self.temperature)),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> ProbeHead:
        return cls(
            mean=tensors["mean"],
            scale=tensors["scale"],
            weight=tensors["weight"],
            bias=tensors["bias"],
            temperature=float(tensors["temperature"]),
        )


def _fit_regression(x: torch.Tensor, y: torch.Tensor, classes: int, penalty: float) -> tuple[torch.Tensor, ...]:
    """Weight and bias minimising mean cross-entropy + penalty/2 · |W|² on standardised x (convex: L-BFGS
    from zero reaches the one minimum, so the fit is deterministic)."""
    weight = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + penalty / 2 * weight.pow(2).sum()
        value.backward()
        return value

    optimiser.step(loss)
    return weight.detach(), bias.detach()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the cross-entropy of `logits` / T on held-out labels (a grid over
    log T: one parameter, so a grid is exact enough and cannot diverge)."""
    grid = torch.logspace(-1.5, 1.5, 121, dtype=torch.float64)
    losses = [float(torch.nn.functional.cross_entropy(logits.double() / t, labels)) for t in grid]
    return float(grid[min(range(len(losses)), key=losses.__getitem__)])


def accuracy(predicted: Sequence[int], labels: Sequence[int]) -> float:
    return sum(p == y for p, y in zip(predicted, labels, strict=True)) / max(len(labels), 1)


def decide(probabilities: torch.Tensor, threshold: float, fallback: int | None) -> list[int]:
    """Each row's likeliest category, or `fallback` (the `other` category) when its probability is under
    `threshold` (no fallback: always the likeliest)."""
    top, index = probabilities.max(dim=-1)
    return [
        fallback if fallback is not None and float(p) < threshold else int(i) for p, i in zip(top, index, strict=True)
    ]


@dataclass(frozen=True)
class ProbeFit:
    """A fitted head, its confidence threshold, and what validation said of it."""

    head: ProbeHead
    threshold: float
    penalty: float
    validation_accuracy: float
    validation_loss: float  # calibrated cross-entropy


def fit_probe(
    train: torch.Tensor,
    train_labels: Sequence[int],
    validation: torch.Tensor,
    validation_labels: Sequence[int],
    classes: int,
    fallback: int | None,
) -> ProbeFit:
    """Fit the head on `train` (rows of pooled states) and choose its penalty, temperature and threshold on
    `validation`: the penalty with the lowest validation loss, the temperature that calibrates it, and the
    lowest threshold (requests under it go to `fallback`) with the best validation accuracy."""
    x = train.double()
    mean = x.mean(0)
    scale = x.std(0, correction=0).clamp_min(MIN_SCALE)
    standard, held = (x - mean) / scale, (validation.double() - mean) / scale
    y, held_y = torch.tensor(list(train_labels)), torch.tensor(list(validation_labels))
    fits = []
    for penalty in PENALTIES:
        weight, bias = _fit_regression(standard, y, classes, penalty)
        fits.append((float(torch.nn.functional.cross_entropy(held @ weight.T + bias, held_y)), penalty, weight, bias))
    _, penalty, weight, bias = min(fits, key=lambda fit: fit[0])
    logits = held @ weight.T + bias
    temperature = fit_temperature(logits, held_y)
    head = ProbeHead(mean.float(), scale.float(), weight.float(), bias.float(), temperature)
    probabilities = head.probabilities(validation)
    scored = [(accuracy(decide(probabilities, t, fallback), list(validation_labels)), -t) for t in THRESHOLDS]
    best_accuracy, negative_threshold = max(scored)
    return ProbeFit(
        head=head,
        threshold=-negative_threshold,
        penalty=penalty,
        validation_accuracy=best_accuracy,
        validation_loss=float(torch.nn.functional.cross_entropy((logits / temperature).float(), held_y)),
    )
