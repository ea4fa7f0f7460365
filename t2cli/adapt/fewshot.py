"""Few-shot adaptation: the α that mixes the bank's experts best on a few labelled examples.

The candidate z' = Σ_k α_k z_k (one α per expert, or per expert and layer) is applied to the model
and scored on the shots: by the task reward of greedy completions, log-likelihood of the reference
answers breaking ties (`reward`), or by that log-likelihood alone (`likelihood`, no generation).
CEM (`t2cli.adapt.cem`) searches α. The winner is published as a registry expert with provenance kind
`searched`: its recipe (α, versions pinned), the shots' sha256, the bank and the score curve. A later
search with the same shots, bank, task, granularity and score finds that expert and reuses it.

The shots come from a file of one task or from the batch itself (`t2cli.adapt.shots`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from t2cli.adapt.cem import CemConfig, CemResult, Score, cem_search
from t2cli.engines.base import Sampling
from t2cli.engines.evaluate import prompt_for
from t2cli.errors import BadInputError
from t2cli.experts.compose import compose_recipe, compose_vectors, depth
from t2cli.experts.files import Expert
from t2cli.experts.manifest import check_compatible
from t2cli.experts.manifest_fields import check_provenance
from t2cli.experts.recipes import Recipe, recipe_from_dict

if TYPE_CHECKING:
    from t2cli.adapt.shots import Shot, ShotSet
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.registry import ExpertRef, Registry

GRANULARITIES = ("expert", "layer")
SCORE_MODES = ("reward", "likelihood")


@dataclass(frozen=True)
class SearchConfig:
    granularity: str = "expert"
    score: str = "reward"
    cem: CemConfig = field(default_factory=CemConfig)
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise BadInputError(f"unknown CEM granularity {self.granularity!r}; use {' or '.join(GRANULARITIES)}")
        if self.score not in SCORE_MODES:
            raise BadInputError(f"unknown CEM score {self.score!r}; use {' or '.join(SCORE_MODES)}")
        if self.max_new_tokens < 1:
            raise BadInputError(f"CEM max new tokens must be >= 1, got {self.max_new_tokens}")


# Shots from the batch: a batch of several tasks runs several searches, so each is the cheap one —
# log-likelihood of the references (no generation) over 4 candidates × 2 iterations. Every candidate
# rebuilds the adapted matrices (SmolLM2, 1 thread, busy 2-core machine: ~15 s a candidate), so
# the bench's 6 × 3 took ~5 min a search; --cem-score and --cem-population/elites/iterations override.
BATCH_SEARCH = SearchConfig(score="likelihood", cem=CemConfig(population=4, elites=2, iterations=2))


@dataclass(frozen=True)
class SearchKey:
    """What makes two searches the same search, so the second can reuse the first's expert."""

    task: str
    shots_sha256: str
    bank: tuple[str, ...]
    granularity: str
    score: str

    def matches(self, provenance: dict[str, Any]) -> bool:
        return provenance.get("kind") == "searched" and all(
            provenance.get(key) == (list(value) if isinstance(value, tuple) else value)
            for key, value in asdict(self).items()
        )


def alpha_values(alpha: torch.Tensor) -> list[float | list[float]]:
    """Per expert, its α as a recipe writes it: a number, or one number per layer (a depth gradient
    whose anchors fall exactly on the layers)."""
    if alpha.dim() == 1 or alpha.shape[1] == 1:
        return [float(a) for a in alpha.reshape(-1)]
    return [[float(a) for a in row] for row in alpha]


def make_recipe(experts: Sequence[Expert], alpha: torch.Tensor, output: str | None = None) -> Recipe:
    """The recipe of a candidate: the experts pinned by version, α as searched, no normalisation."""
    entries = [{"name": e.manifest.ref, "alpha": a} for e, a in zip(experts, alpha_values(alpha), strict=True)]
    data: dict[str, Any] = {"base_model": experts[0].manifest.base_model, "experts": entries, "normalize": False}
    if output is not None:
        data["output"] = output
    return recipe_from_dict(data, "few-shot search")


def check_bank(experts: Sequence[Expert]) -> None:
    """Experts can be mixed only when they share base weights, targets and SVF rule."""
    if len(experts) < 2:
        raise BadInputError(f"few-shot adaptation mixes at least two experts, the bank has {len(experts)}")
    first = experts[0].manifest
    for expert in experts[1:]:
        check_compatible(first, expert.manifest)
        if expert.manifest.svf_rule != first.svf_rule:
            raise BadInputError(
                f"{first.ref} uses SVF rule {first.svf_rule!r} but {expert.manifest.ref} uses "
                f"{expert.manifest.svf_rule!r}; pick experts trained with the same rule with --experts"
            )


class ShotObjective:
    """Scores one α: apply the mix, then reward (and likelihood) on the shots."""

    def __init__(
        self,
        slot: ExpertSlot,
        chat: bool,
        experts: Sequence[Expert],
        shots: Sequence[Shot],
        config: SearchConfig,
    ) -> None:
        self.slot, self.experts, self.shots, self.config = slot, list(experts), list(shots), config
        self.prompts = [prompt_for(task, example, chat) for task, example in shots]
        references = [(i, task.reference_completion(example)) for i, (task, example) in enumerate(shots)]
        self.references = [(i, text) for i, text in references if text]
        if config.score == "likelihood" and not self.references:
            names = sorted({task.name for task, _ in shots})
            raise BadInputError(
                f"the shots ({', '.join(names)}) have no reference answers to score; use --cem-score reward"
            )

    def __call__(self, alpha: torch.Tensor) -> Score:
        recipe = make_recipe(self.experts, alpha)
        first = self.experts[0].manifest
        z = compose_vectors([e.z for e in self.experts], [e.alpha for e in recipe.experts], first.targets)
        self.slot.apply(z, first.svf_rule)
        likelihood = self._likelihood()
        if self.config.score == "likelihood":
            return (likelihood,)
        engine = self.slot.engine
        texts = [g.text for g in engine.generate(self.prompts, Sampling(max_new_tokens=self.config.max_new_tokens))]
        rewards = self._rewards(texts)
        return (math.fsum((r + 1) / 2 for r in rewards) / len(rewards), likelihood)

    def _rewards(self, texts: Sequence[str]) -> list[float]:
        """Each shot's reward from its own task, task by task (code tasks run their programs in parallel)."""
        rewards = [0.0] * len(texts)
        by_task: dict[str, list[int]] = {}
        for index, (task, _) in enumerate(self.shots):
            by_task.setdefault(task.name, []).append(index)
        for indices in by_task.values():
            task = self.shots[indices[0]][0]
            scored = task.score_many([self.shots[i][1] for i in indices], [texts[i] for i in indices])
            for index, reward in zip(indices, scored, strict=True):
                rewards[index] = reward
        return rewards

    def _likelihood(self) -> float:
        """Mean log-likelihood of the reference answers (0 when the task has none)."""
        if not self.references:
            return 0.0
        scores = self.slot.engine.score([self.prompts[i] for i, _ in self.references], [t for _, t in self.references])
        return math.fsum(scores) / len(scores)

    def initial(self) -> torch.Tensor:
        """The start of the search: the plain average of the experts (α = 1/K everywhere)."""
        count = len(self.experts)
        shape = (count,) if self.config.granularity == "expert" else (count, depth(self.experts[0].manifest.targets))
        return torch.full(shape, 1.0 / count, dtype=torch.float64)


def search_alpha(
    slot: ExpertSlot,
    chat: bool,
    experts: Sequence[Expert],
    shots: Sequence[Shot],
    config: SearchConfig,
    on_iteration: Callable[[int, Score], None] | None = None,
) -> CemResult:
    """CEM over α on the shots; the engine holds the last candidate afterwards (the slot knows)."""
    check_bank(experts)
    objective = ShotObjective(slot, chat, experts, shots, config)
    return cem_search(objective, objective.initial(), config.cem, on_iteration)


def find_searched(registry: Registry, model_slug: str, key: SearchKey) -> ExpertRef | None:
    """The newest registry expert a search with this key produced, if any."""
    found = []
    for name, versions in registry.catalog().get(model_slug, {}).items():
        for version in versions:
            ref = registry.ref(model_slug, name, version)
            manifest = ref.manifest()
            if key.matches(manifest.provenance):
                found.append((manifest.created, version, ref))
    return max(found, key=lambda item: item[:2])[2] if found else None


def searched_expert(
    registry: Registry,
    experts: Sequence[Expert],
    key: SearchKey,
    shots: int,
    result: CemResult,
    config: SearchConfig,
    name: str,
) -> Expert:
    """The winning mix as an unpublished expert whose provenance says how it was found."""
    composed = compose_recipe(make_recipe(experts, result.best, output=name), registry)
    names = ("shots_loglik",) if config.score == "likelihood" else ("shots_score", "shots_loglik")
    metrics = dict(zip(names, result.score, strict=True))
    provenance = check_provenance(
        {
            "kind": "searched",
            "method": "cem",
            "recipe": composed.manifest.provenance["recipe"],
            **asdict(key),
            "bank": list(key.bank),
            "shots": shots,
            "cem": asdict(config.cem),
            "max_new_tokens": config.max_new_tokens,
            "curve": [list(score) for score in result.curve],
            "best": list(result.score),
        }
    )
    return Expert(
        replace(
            composed.manifest,
            task=key.task,
            description=f"CEM α-mix of {', '.join(key.bank)} for {key.task}",
            provenance=provenance,
            metrics=metrics,
        ),
        composed.z,
    )


def few_shot_expert(
    registry: Registry,
    slot: ExpertSlot,
    chat: bool,
    bank: Sequence[ExpertRef],
    shot_set: ShotSet,
    config: SearchConfig,
    *,
    name: str | None = None,
    force: bool = False,
    on_iteration: Callable[[int, Score], None] | None = None,
) -> tuple[ExpertRef, bool]:
    """The searched expert for a set of shots and a bank: the one an earlier search with the same key
    published, else a new search, published as `name` (default LABEL-fewshot).

    Returns (ref, searched): searched is False when an earlier search was reused.
    """
    experts = [ref.load(slot.fingerprint) for ref in bank]  # refuses a bank of another model, even on reuse
    key = SearchKey(shot_set.label, shot_set.sha256, tuple(r.spec for r in bank), config.granularity, config.score)
    if not force:
        found = find_searched(registry, bank[0].model_slug, key)
        if found is not None:
            return found, False
    result = search_alpha(slot, chat, experts, shot_set.shots, config, on_iteration)
    expert = searched_expert(
        registry, experts, key, len(shot_set.shots), result, config, name or f"{shot_set.label}-fewshot"
    )
    return registry.publish(expert), True
