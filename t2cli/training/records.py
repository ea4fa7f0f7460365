"""What a training run records: one StepRecord per step (log.jsonl), the resumable state, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    pass


@dataclass
class StepRecord:
    """One line of the JSONL training log."""

    step: int
    reward: float
    kl: float
    grad_norm: float
    tokens: int
    sample_s: float
    score_s: float
    grad_s: float
    val_score: float | None = None
    # Peak memory of the step on the model's device: CUDA max allocated, else the process's peak RSS so far.
    peak_memory_mb: float | None = None


@dataclass
class StepStats:
    reward: float
    kl: float
    tokens: int
    sample_s: float = 0.0
    score_s: float = 0.0
    grad_s: float = 0.0


@dataclass
class RunState:
    """What a checkpoint must restore besides the trained tensors and Adam's moments."""

    step: int
    base_val: float
    best_val: float
    best_step: int
    best: dict[str, torch.Tensor]  # the policy's snapshot at the best validation score


@dataclass
class TrainResult:
    z: dict[str, torch.Tensor]  # what the expert stores (the identity for LoRA)
    best_step: int
    best_val: float
    base_val: float
    steps: list[StepRecord]
    rollout: str
    trainable_parameters: int
    peak_memory_mb: float
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    # Files published beside z (registry name -> path): LoRA's PEFT adapter; none for SVF.
    files: dict[str, Path] = field(default_factory=dict)
