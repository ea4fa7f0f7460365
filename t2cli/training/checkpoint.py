"""Checkpoints of a run: the trained tensors, Adam's moments and the best snapshot, resumable bit for bit."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from t2cli.errors import BadInputError
from t2cli.fsutil import atomic_write
from t2cli.training.config import TrainConfig
from t2cli.training.records import RunState
from t2cli.training.run_folder import CHECKPOINT_STATE as STATE
from t2cli.training.run_folder import CHECKPOINT_TENSORS as TENSORS

if TYPE_CHECKING:
    from t2cli.training.policy import Policy


def save(run_dir: Path, policy: Policy, optimizer: torch.optim.Optimizer, config: TrainConfig, state: RunState) -> None:
    """Trained tensors, Adam's moments and the best snapshot (safetensors) plus counters (JSON), each atomic.

    The JSON names the step and is replaced last, so a run killed between the two files
    resumes from the previous complete checkpoint's counters only if the tensors match it.
    """
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    adam_steps: dict[str, float] = {}
    # "delta/" names the trained tensors (δ for SVF, A and B for LoRA); SVF checkpoints predate LoRA.
    for name, trained in policy.trainable.items():
        tensors[f"delta/{name}"] = trained.detach().clone()
        moments = optimizer.state.get(trained)
        if moments:
            tensors[f"exp_avg/{name}"] = moments["exp_avg"].clone()
            tensors[f"exp_avg_sq/{name}"] = moments["exp_avg_sq"].clone()
            adam_steps[name] = float(moments["step"])
    tensors |= {f"best/{name}": t for name, t in state.best.items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / TENSORS, save(tensors, metadata={"step": str(state.step)}))
    counters = {k: v for k, v in asdict(state).items() if k != "best"}
    record = counters | {"adam_steps": adam_steps, "config": asdict(config)}
    atomic_write(run_dir / STATE, (json.dumps(record) + "\n").encode())


def load(run_dir: Path, policy: Policy, optimizer: torch.optim.Optimizer, config: TrainConfig) -> RunState | None:
    """Restore the policy's tensors and Adam's state from `run_dir`; None when it holds no checkpoint."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors_path, state_path = run_dir / TENSORS, run_dir / STATE
    if not state_path.exists() or not tensors_path.exists():
        return None
    saved = json.loads(state_path.read_text())
    # Rebuilt through TrainConfig, so options added since the checkpoint compare at their defaults.
    try:
        same = TrainConfig(**saved.pop("config")) == config
    except (TypeError, BadInputError):
        same = False
    if not same:
        raise BadInputError(f"checkpoint in {run_dir} was made with other options; resume with the same options")
    with safe_open(str(tensors_path), framework="pt") as handle:
        if handle.metadata().get("step") != str(saved["step"]):
            raise BadInputError(f"checkpoint in {run_dir} is incomplete; start again without --resume")
    tensors = load_file(str(tensors_path))
    adam_steps = saved.pop("adam_steps")
    with torch.no_grad():
        for name, trained in policy.trainable.items():
            trained.copy_(tensors[f"delta/{name}"])
            if name in adam_steps:
                optimizer.state[trained] = {
                    "step": torch.tensor(adam_steps[name]),
                    "exp_avg": tensors[f"exp_avg/{name}"],
                    "exp_avg_sq": tensors[f"exp_avg_sq/{name}"],
                }
    best = {name.removeprefix("best/"): t for name, t in tensors.items() if name.startswith("best/")}
    return RunState(best=best, **saved)
