"""What the trainer optimises: the Policy interface and the SVF policy (z per targeted matrix)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from t2cli.engines.base import Engine
from t2cli.models import LoadedModel
from t2cli.svf import Factors, adapted_weights, functional_forward

if TYPE_CHECKING:
    pass


class Policy(Protocol):
    """What the trainer needs from a parametrisation: SVF's z (`SVFPolicy`) or a LoRA adapter (`LoRAPolicy`)."""

    loaded: LoadedModel  # the model the engine runs

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        """The tensors Adam trains, by name (checkpoints key on these names)."""
        ...

    @property
    def parameters(self) -> list[torch.Tensor]: ...

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A detached copy of the trained state: what the best checkpoint keeps."""
        ...

    def step(self) -> AbstractContextManager[None]:
        """Bracket the forward and backward passes of one optimiser step."""
        ...

    def serving(self, engine: Engine, adapted: bool = True) -> AbstractContextManager[None]:
        """The engine generates as the current policy (or as the base model) inside."""
        ...

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor: ...

    def base_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int
    ) -> torch.Tensor: ...

    def expert_z(self, snapshot: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The z vectors the published expert stores for a snapshot."""
        ...

    def write_files(self, snapshot: Mapping[str, torch.Tensor], folder: Path) -> dict[str, Path]:
        """Write what the expert needs besides z into `folder`; return registry name -> path."""
        ...


class SVFPolicy:
    """z = 1 + δ for each target; δ is what Adam trains, z is what the artifact stores.

    With `rank` r, δ covers only each matrix's r largest singular values (the SVD sorts them first) and
    z is 1 beyond them, so ΔW = U diag(s(z − 1)) Vh has rank at most r."""

    def __init__(self, loaded: LoadedModel, factors: dict[str, Factors], rule: str, rank: int | None = None) -> None:
        self.loaded = loaded
        self.factors = factors
        self.rule = rule
        self.delta = {
            name: torch.zeros(
                min(rank or f.S.numel(), f.S.numel()), dtype=torch.float32, device=f.S.device
            ).requires_grad_()
            for name, f in factors.items()
        }
        self._params = dict(loaded.model.named_parameters())
        self._leaves: dict[str, torch.Tensor] = {}

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        return self.delta

    @property
    def parameters(self) -> list[torch.Tensor]:
        return list(self.delta.values())

    def _z(self) -> dict[str, torch.Tensor]:
        """1 + δ, padded with ones to each matrix's full rank (differentiable in δ)."""
        return {
            name: torch.nn.functional.pad(1 + d, (0, self.factors[name].S.numel() - d.numel()), value=1.0)
            for name, d in self.delta.items()
        }

    def z(self) -> dict[str, torch.Tensor]:
        return {name: z.detach().clone() for name, z in self._z().items()}

    def snapshot(self) -> dict[str, torch.Tensor]:
        return self.z()

    def expert_z(self, snapshot: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(snapshot)

    def write_files(self, snapshot: Mapping[str, torch.Tensor], folder: Path) -> dict[str, Path]:
        return {}

    @contextmanager
    def serving(self, engine: Engine, adapted: bool = True) -> Iterator[None]:
        """Swap W'(z) into the engine's model in place (or keep the base), and restore the base after."""
        engine.set_expert(self.z() if adapted else None, self.rule)
        try:
            yield
        finally:
            engine.set_expert(None)

    @contextmanager
    def step(self) -> Iterator[None]:
        """Materialise W'(1 + δ) once for all micro-batches of a step, then back-propagate into δ once.

        Micro-batches run against detached copies of W' that collect gradients; the single
        backward through the W'(z) graph afterwards costs one materialisation per step instead of
        one per micro-batch.
        """
        graph = adapted_weights(self._params, self.factors, self._z(), self.rule)
        self._leaves = {name: w.detach().requires_grad_() for name, w in graph.items()}
        try:
            yield
            used = [name for name, leaf in self._leaves.items() if leaf.grad is not None]
            if used:
                torch.autograd.backward([graph[n] for n in used], [self._leaves[n].grad for n in used])
        finally:
            self._leaves = {}

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions under W'(1 + δ) (inside `step()`), differentiable in δ."""
        if not self._leaves:
            raise RuntimeError("SVFPolicy.logits runs inside `with policy.step():`")
        device = self.loaded.device
        out = functional_forward(
            self.loaded.model,
            self._leaves,
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=keep,
        )
        # The objectives keep their masks and labels beside the inputs (on the CPU): logits go back there.
        return out.logits.float().to(ids.device)

    @torch.no_grad()
    def base_logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        device = self.loaded.device
        out = self.loaded.model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=keep,
        )
        return out.logits.float().to(ids.device)
