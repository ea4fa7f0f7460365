"""Training across processes: each takes a slice of every batch, and gradients are summed.

Under `accelerate launch` (or `torchrun`) every process runs the same trainer on the same batch
schedule. Each one rolls out and back-propagates only its own slice of the batch, with the loss
normalised by the *whole* batch's sizes, so summing the gradients over processes gives exactly the
one-process gradient. The optimiser then takes the same step everywhere and the parameters stay
identical without being sent around. Statistics (reward, KL, validation score) are summed the same
way; only the main process writes checkpoints, logs and the registry.

A single process is `World()`: every operation is the identity and torch.distributed is never
touched, so the one-process path costs nothing and needs no launcher.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from t2cli.errors import BadInputError


@dataclass(frozen=True)
class World:
    """This process's place among `size` processes that train one model together."""

    rank: int = 0
    size: int = 1
    # Where collective buffers live: NCCL only moves CUDA tensors, gloo moves CPU ones.
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """The process that writes files (checkpoints, logs, the registry) and prints."""
        return self.rank == 0

    def shard(self, count: int) -> range:
        """This process's contiguous slice of `count` items; slices differ in length by at most one."""
        return range(count * self.rank // self.size, count * (self.rank + 1) // self.size)

    def sum(self, *values: float) -> tuple[float, ...]:
        """Each value summed over processes (float64, so counts and sums stay exact)."""
        if self.size == 1:
            return tuple(float(v) for v in values)
        buffer = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(buffer)
        return tuple(buffer.tolist())

    def assemble(self, local: torch.Tensor, start: int, total: int) -> torch.Tensor:
        """The whole 1-D vector of `total` values whose slice [start, start + len(local)) this process holds."""
        if self.size == 1:
            return local
        whole = torch.zeros(total, dtype=local.dtype, device=self.device)
        whole[start : start + len(local)] = local.to(self.device)
        torch.distributed.all_reduce(whole)
        return whole.to(local.device)

    def sum_gradients(self, parameters: Sequence[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its sum over processes, in one collective.

        A parameter no process gave a gradient keeps `None`, as it would in one process (Adam
        skips it rather than stepping on a zero gradient).
        """
        if self.size == 1 or not parameters:
            return
        # One flag per parameter rides along, to tell "no gradient anywhere" from a zero gradient.
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters]
        flags = [torch.ones(1) if p.grad is not None else torch.zeros(1) for p in parameters]
        buffer = torch.cat([t.to(self.device, torch.float32) for t in (*parts, *flags)])
        torch.distributed.all_reduce(buffer)
        offset = 0
        for parameter, flag in zip(parameters, buffer[-len(parameters) :].tolist(), strict=True):
            count = parameter.numel()
            chunk = buffer[offset : offset + count]
            offset += count
            parameter.grad = chunk.view_as(parameter).to(parameter.device, parameter.dtype) if flag else None

    @torch.no_grad()
    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite the tensors with the main process's values (so every process starts identical)."""
        if self.size == 1:
            return
        for tensor in tensors:
            buffer = tensor.detach().to(self.device)
            torch.distributed.broadcast(buffer, src=0)
            tensor.copy_(buffer)


def _launched_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise BadInputError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start t2 with accelerate launch or torchrun"
        ) from None


@contextmanager
def launched_world(device: torch.device | str = "cpu") -> Iterator[World]:
    """The processes `accelerate launch` / `torchrun` started (from RANK, WORLD_SIZE, MASTER_ADDR…).

    Joins the process group for the duration (gloo for CPU tensors, NCCL for CUDA ones) and leaves
    it afterwards; a plain `t2 train` (no WORLD_SIZE, or 1) is a single-process World. A group the
    caller already joined is used as is and left to the caller.
    """
    device = torch.device(device)
    launched = _launched_size() > 1
    if device.type == "cuda" and (launched or device.index is None):
        # One GPU per process on each host, numbered by the launcher's LOCAL_RANK (a resolved
        # `cuda:0` names the kind of device here, not one GPU for every process).
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if launched else 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not launched:
        yield World(device=str(device))
        return
    dist = torch.distributed
    owned = not dist.is_initialized()
    if owned:
        try:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
        except (ValueError, KeyError) as error:
            raise BadInputError(
                f"cannot join the process group ({error}); start t2 with accelerate launch or torchrun"
            ) from None
    try:
        yield World(rank=dist.get_rank(), size=dist.get_world_size(), device=str(device))
        if owned:
            # Leave together: the main process still writes the checkpoint, curves and adapter after
            # the last collective, and the others would tear the group down and exit while it still
            # holds its end (suspected in issue #14, a rank dying of SIGABRT at the end of launched
            # runs). Only on success: after an error the others may sit in another collective (the
            # launcher stops them).
            dist.barrier()
    finally:
        if owned:
            dist.destroy_process_group()
