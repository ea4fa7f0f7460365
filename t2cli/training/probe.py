"""`t2 train --task cls --method probe --layer L`: fit a probe (t2cli.adapt.probe) on the cls task's bare
requests and publish it as a registry version of kind `probe`.

The requests are the ones a `cls` expert trains on (`ClassificationTask`: each task's `raw_request` in the
shared wrappers, plus `other`); each is read once, through the model's first L layers only, and the head is
fitted on the mean states. Validation requests choose the head's penalty, temperature and threshold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from t2cli.adapt.probe import ProbeFit, accuracy, decide, fit_probe
from t2cli.engines.early_exit import pooled_states, truncated_view
from t2cli.experts.manifest_fields import ProbeInfo
from t2cli.tasks.base import Example
from t2cli.tasks.classification import OTHER, ClassificationTask
from t2cli.training.data import data_identity

if TYPE_CHECKING:
    from t2cli.experts.registry import ExpertRef, Registry
    from t2cli.models.loading import LoadedModel
    from t2cli.training.config import TrainConfig


@dataclass(frozen=True)
class ProbeRun:
    """A fitted probe with what it was fitted on and how validation scored it."""

    fit: ProbeFit
    info: ProbeInfo
    train_accuracy: float
    validation_by_category: dict[str, float]
    train_n: int
    validation_n: int
    seconds: float


def labelled_requests(examples: Sequence[Example], names: Sequence[str]) -> tuple[list[str], list[int]]:
    """The bare request of each cls example and its category's index."""
    return [e.meta["request"] for e in examples], [names.index(str(e.reference)) for e in examples]


def train_probe(
    loaded: LoadedModel,
    task: ClassificationTask,
    train: Sequence[Example],
    validation: Sequence[Example],
    layer: int,
    tokens: int,
    batch_size: int = 16,
) -> ProbeRun:
    """Read every request's mean state at `layer` over its first `tokens` tokens (an early exit: the other
    layers never run) and fit the probe's head on them."""
    started = time.perf_counter()
    names = [name for name, _ in task.categories]
    decoder = truncated_view(loaded.model, layer)
    texts, labels = labelled_requests(train, names)
    held_texts, held_labels = labelled_requests(validation, names)
    features = pooled_states(decoder, loaded.tokenizer, texts, tokens, batch_size)
    held = pooled_states(decoder, loaded.tokenizer, held_texts, tokens, batch_size)
    fallback = names.index(OTHER) if OTHER in names else None
    fit = fit_probe(features, labels, held, held_labels, len(names), fallback)
    chosen = decide(fit.head.probabilities(held), fit.threshold, fallback)
    by_category = {
        name: accuracy(
            [c for c, y in zip(chosen, held_labels, strict=True) if y == index], [y for y in held_labels if y == index]
        )
        for index, name in enumerate(names)
        if index in held_labels
    }
    info = ProbeInfo(layer, tokens, int(features.shape[1]), tuple(task.categories), fit.threshold)
    train_chosen = decide(fit.head.probabilities(features), fit.threshold, fallback)
    return ProbeRun(
        fit=fit,
        info=info,
        train_accuracy=accuracy(train_chosen, labels),
        validation_by_category=by_category,
        train_n=len(texts),
        validation_n=len(held_texts),
        seconds=time.perf_counter() - started,
    )


def publish_probe(
    registry: Registry,
    loaded: LoadedModel,
    task: ClassificationTask,
    train: Sequence[Example],
    config: TrainConfig,
    run: ProbeRun,
    name: str,
) -> ExpertRef:
    """Store the probe as a new registry version: its head's tensors, its settings, validation metrics and
    the provenance of its data (the cls task's requests, identified by content)."""
    from t2cli.experts.files import Expert
    from t2cli.experts.manifest import new_manifest

    identity = data_identity(None, train)
    # The members' data by file or folder name (hyperparameters.data keeps the TASK=SOURCE pairs as given).
    pairs = (item.partition("=") for item in (config.data or "").split(",") if item)
    identity["name"] = "cls requests: " + ", ".join(f"{task}={Path(source).name}" for task, _, source in pairs)
    categories = ", ".join(name for name, _ in task.categories)
    manifest = new_manifest(
        name=name,
        base_model=loaded.model_id,
        base_fingerprint=loaded.fingerprint,
        targets={},
        provenance={
            "kind": "trained",
            "task": task.name,
            "data": identity,
            "data_sha256": identity["sha256"],
            "method": "probe",
            "hyperparameters": asdict(config),
            "steps": 0,  # a closed-form-like fit (L-BFGS to convergence), not optimiser steps
            "seed": config.seed,
            "penalty": run.fit.penalty,
            "categories": [list(category) for category in task.categories],
        },
        task=task.name,
        description=(
            f"probe: routes bare requests to {categories} from the mean hidden state after decoder layer "
            f"{run.info.layer} over the first {run.info.tokens} tokens; below {run.info.threshold:.2f} "
            "confidence a request keeps the base weights"
        ),
        metrics={
            "val_score": run.fit.validation_accuracy,
            "val_loss": run.fit.validation_loss,
            "train_score": run.train_accuracy,
            "val_n": float(run.validation_n),
            "train_n": float(run.train_n),
            **{f"val_{category}": score for category, score in run.validation_by_category.items()},
        },
        probe=run.info,
    )
    return registry.publish(Expert(manifest, run.fit.head.to_tensors()))
