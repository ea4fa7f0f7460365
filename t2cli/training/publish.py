"""Publishing a finished run as a new registry version, with its provenance and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from t2cli.models.loading import LoadedModel
from t2cli.tasks.base import Example, Task

if TYPE_CHECKING:
    from t2cli.experts.registry import ExpertRef, Registry
from t2cli.training.config import TrainConfig
from t2cli.training.data import data_identity
from t2cli.training.records import TrainResult


def publish(
    registry: Registry,
    loaded: LoadedModel,
    task: Task,
    data: str | None,
    train: Sequence[Example],
    config: TrainConfig,
    result: TrainResult,
    name: str,
) -> ExpertRef:
    """Store the best z (and a LoRA run's adapter files) as a new version, with provenance and metrics.

    `data` is the --data the run was given (None: the task's own); provenance records its identity.
    """
    from t2cli.experts.files import Expert
    from t2cli.experts.manifest import new_manifest

    by_name = {t.name: t for t in loaded.targets}
    identity = data_identity(data, train)
    provenance = {
        "kind": "trained",
        "task": task.name,
        "data": identity,
        "data_sha256": identity["sha256"],  # what readers before data identities look for
        "method": config.method,
        "rollout": result.rollout,
        "hyperparameters": asdict(config),
        "steps": len(result.steps),
        "best_step": result.best_step,
        "seed": config.seed,
    }
    categories = getattr(task, "categories", None)
    if categories:
        # A classifier is asked over exactly these categories, in this order, when it routes.
        provenance["categories"] = [list(category) for category in categories]
    if config.adapter == "lora":
        from t2cli.experts.lora import adapter_provenance

        provenance["adapter"] = adapter_provenance(config.rank)
    manifest = new_manifest(
        name=name,
        base_model=loaded.model_id,
        base_fingerprint=loaded.fingerprint,
        targets=[by_name[n] for n in result.z],
        provenance=provenance,
        svf_rule=config.rule,
        task=task.name,
        description=task.description,
        metrics={
            "val_score": result.best_val,
            "base_val_score": result.base_val,
            "trainable_parameters": result.trainable_parameters,
        },
    )
    z = {n: z.float().contiguous() for n, z in result.z.items()}
    return registry.publish(Expert(manifest, z), extra_files=result.files)
