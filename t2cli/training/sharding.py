"""Sharded training (torch FSDP2): each process holds 1/N of every decoder layer's weights and SVF factors.

Data parallelism (t2cli.training.distributed) keeps a whole model in every process, so a model larger
than one device cannot be trained. Here each decoder layer is wrapped with `fully_shard`: its weights
and the side factors t2 hangs off its linear layers (t2cli.side_path) are split across the processes,
gathered for that layer's forward and again for its backward, and freed after each. The embeddings,
final norm and LM head stay whole in every process (the head scores outside the layers). z is not a
parameter of any layer: every process keeps the whole vector and the summed gradient updates it the
same way everywhere (World.sum_gradients), exactly as without sharding.

Every process must run the same sequence of layer forwards, since each gathers with all the others:
the trainer gives each process an equal slice of every batch and lets every process validate and
sample rollouts on the whole batch (the same numbers in each, so nothing is summed).
"""

from __future__ import annotations

import torch

from t2cli.errors import BadInputError
from t2cli.training.distributed import World


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    layers = getattr(model.get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise BadInputError(f"{type(model).__name__} has no list of decoder layers to shard; train it without --shard")
    return layers


def shard_layers(model: torch.nn.Module, world: World) -> None:
    """Split every decoder layer's parameters across the world's processes (in place)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(torch.device(world.device).type, (world.size,))
    for layer in decoder_layers(model):
        # Explicit: a layer is a root of its own (nothing wraps the whole model), and FSDP keeps a root's
        # weights gathered after forward unless told otherwise, which would hold the whole model at once.
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)


def held_parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters this process holds: its own shards of sharded ones, all of the others."""
    from torch.distributed.tensor import DTensor

    total = 0
    for parameter in model.parameters():
        local = parameter.to_local() if isinstance(parameter, DTensor) else parameter
        total += local.numel() * local.element_size()
    return total
