"""The cross-entropy method: search a real vector by refitting a Gaussian to the best samples.

Each iteration samples a population from N(mean, std²) (the best candidate so far takes the first
slot and is scored again, so a lucky score cannot stick), keeps the `elites` best, and refits mean
and std to them. Scores are tuples compared lexicographically, so a second number breaks ties in
the first (e.g. task reward, then log-likelihood of the right answers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from t2cli.errors import BadInputError

Score = tuple[float, ...]


@dataclass(frozen=True)
class CemConfig:
    population: int = 8
    elites: int = 3
    iterations: int = 5
    seed: int = 0
    init_std: float = 0.3
    # A floor on the spread, so the search never collapses onto one point before it ends.
    min_std: float = 0.01

    def __post_init__(self) -> None:
        if self.population < 2 or not 1 <= self.elites <= self.population:
            raise BadInputError(
                f"CEM needs population >= 2 and 1 <= elites <= population, got {self.population} and {self.elites}"
            )
        if self.iterations < 1:
            raise BadInputError(f"CEM iterations must be >= 1, got {self.iterations}")
        if self.init_std <= 0 or self.min_std < 0:
            raise BadInputError(f"CEM init std must be > 0 and min std >= 0, got {self.init_std}, {self.min_std}")


@dataclass
class CemResult:
    best: torch.Tensor
    score: Score
    # The best score after each iteration.
    curve: list[Score] = field(default_factory=list)
    evaluations: int = 0


def cem_search(
    objective: Callable[[torch.Tensor], Score],
    mean: torch.Tensor,
    config: CemConfig,
    on_iteration: Callable[[int, Score], None] | None = None,
) -> CemResult:
    """Maximise `objective` over vectors shaped like `mean`, starting from N(mean, init_std²)."""
    generator = torch.Generator().manual_seed(config.seed)
    mean = mean.detach().double().clone()
    std = torch.full_like(mean, config.init_std)
    result = CemResult(best=mean.clone(), score=())
    for iteration in range(config.iterations):
        noise = torch.randn((config.population, *mean.shape), generator=generator, dtype=torch.float64)
        population = mean + std * noise
        population[0] = result.best
        scores = [objective(candidate.clone()) for candidate in population]
        result.evaluations += len(scores)
        # A stable sort: on equal scores the earlier candidate (the incumbent first) wins.
        order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
        elites = population[order[: config.elites]]
        mean = elites.mean(0)
        std = elites.std(0, unbiased=False).clamp_min(config.min_std)
        result.best, result.score = population[order[0]].clone(), scores[order[0]]
        result.curve.append(result.score)
        if on_iteration is not None:
            on_iteration(iteration, result.score)
    return result
