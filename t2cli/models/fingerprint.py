"""Fingerprints: what identifies a model's weights (its stored target matrices), whatever dtype or device
they load in."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import torch

from t2cli.targets import TargetMatrix


def fingerprint(model: torch.nn.Module, targets: Iterable[TargetMatrix]) -> str:
    """The fingerprint of a model's live target parameters (what a model with no checkpoint files gets)."""
    return weights_fingerprint(targets, model.get_parameter)


def weights_fingerprint(targets: Iterable[TargetMatrix], read: Callable[[str], torch.Tensor]) -> str:
    """sha256 over the names, shapes and fp32 bytes of the target matrices as `read` gives them.

    `read` returns a matrix as the checkpoint stores it, so the fingerprint names the weights, not
    the dtype or device they were loaded in: an expert moves between fp32 and bf16, CPU and GPU
    loads of one checkpoint. Stored bf16/fp16 values widen to fp32 exactly; hashing fp32 keeps the
    fingerprints of fp32 checkpoints what they were when the loaded tensors themselves were hashed.
    """
    digest = hashlib.sha256()
    for target in sorted(targets, key=lambda t: t.name):
        tensor = read(target.name).detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{target.name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
