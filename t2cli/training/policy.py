"""What the trainer optimises: the Policy interface and the SVF policy (z per targeted matrix)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import torch

from t2cli import side_path
from t2cli.device import free_memory_bytes
from t2cli.engines.base import Engine
from t2cli.models.loading import LoadedModel, shared_copy
from t2cli.svd import decompose
from t2cli.svd_top import top_factors
from t2cli.svf import Factors
from t2cli.targets import TargetMatrix
from t2cli.training.logprobs import OutputHead, final_hidden, output_head
from t2cli.training.sharding import decoder_layers

KEEP_SHARE = 0.25  # of the free memory, at most, for the kept W′ of a full-spectrum policy


class Policy(Protocol):
    """What the trainer needs from a parametrisation: SVF's z (`SVFPolicy`) or a LoRA adapter (`LoRAPolicy`)."""

    loaded: LoadedModel  # the model the engine runs
    head: OutputHead  # the LM head both the policy and the base score with

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        """The tensors Adam trains, by name (checkpoints key on these names)."""
        ...

    @property
    def parameters(self) -> list[torch.Tensor]: ...

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A detached copy of the trained state: what the best checkpoint keeps."""
        ...

    def serving(self, engine: Engine, adapted: bool = True) -> AbstractContextManager[None]:
        """The engine generates as the current policy (or as the base model) inside."""
        ...

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        """Final hidden states of the last `keep` positions under the policy, on the model's device,
        differentiable in the trained tensors (`head` turns them into logits)."""
        ...

    def base_hidden(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        """The same under the base model, without gradients."""
        ...

    def expert_z(self, snapshot: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The z vectors the published expert stores for a snapshot."""
        ...

    def write_files(self, snapshot: Mapping[str, torch.Tensor], folder: Path) -> dict[str, Path]:
        """Write what the expert needs besides z into `folder`; return registry name -> path."""
        ...


class SVFPolicy:
    """z = 1 + δ for each target; δ is what Adam trains, z is what the artifact stores.

    With `rank` r, δ covers only each matrix's r largest singular values (the SVD sorts them first) and
    z is 1 beyond them, so ΔW = U diag(s(z − 1)) Vh has rank at most r, and only r columns of U and V
    are held (t2cli/side_path.py): training at rank r costs what a rank-r LoRA costs.

    `sharded`: the model's layers are split across processes (FSDP), so rollouts and validation run
    through the side path too instead of swapping a materialised W′ into a weight no process holds whole.
    `recompute`: decoder layers keep only their inputs and run again in the backward (activation
    checkpointing): a third more compute for activations of one layer at a time instead of all.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        factors: Mapping[str, Factors],
        rule: str,
        rank: int | None = None,
        *,
        sharded: bool = False,
        recompute: bool = False,
    ) -> None:
        # The side factors hang off a copy of the module tree (sharing every weight), so the caller's model
        # keeps its own parameter names and outputs.
        self.loaded = replace(loaded, model=shared_copy(loaded.model))
        self.rule = rule
        self.sharded = sharded
        self.recompute = recompute
        # The factors may hold only the top k triplets (t2cli.svd_top); the full rank is min(m, n) of W.
        self.full_ranks = {name: min(f.U.shape[0], f.Vh.shape[1]) for name, f in factors.items()}
        ranks = {name: min(rank or full, full) for name, full in self.full_ranks.items()}
        self.delta = {
            name: torch.zeros(k, dtype=torch.float32, device=loaded.device).requires_grad_()
            for name, k in ranks.items()
        }
        self.sides = side_path.attach(self.loaded.model, factors, ranks)
        self.kept = side_path.KeptWeights() if self._room_to_keep(ranks) else None
        self.head = output_head(self.loaded.model)

    def _room_to_keep(self, ranks: Mapping[str, int]) -> bool:
        """Whether to keep W′ for a step's micro-batches (side_path.KeptWeights): for the whole spectrum, whose
        W′ is otherwise rebuilt twice a call, when one copy of the targets takes at most `KEEP_SHARE` of the
        free memory. A rank-k policy keeps nothing that large (its side path is a LoRA's shape), nor does a
        sharded one (no process holds a whole W); a full 8B on one 80 GB GPU rebuilds rather than not fit."""
        if self.sharded or any(ranks[name] < full for name, full in self.full_ranks.items()):
            return False
        free = free_memory_bytes(self.loaded.device)
        needed = sum(side.U.shape[0] * side.Vh.shape[1] * side.U.element_size() for side in self.sides.values())
        return free is not None and needed <= KEEP_SHARE * free

    @classmethod
    def for_targets(
        cls, loaded: LoadedModel, targets: Sequence[TargetMatrix], rule: str, rank: int | None = None, **options: bool
    ) -> SVFPolicy:  # options: sharded, recompute
        """The policy over these targets, its factors read from the SVD cache (computed first where missing).

        At `rank` k only the top k triplets are read (t2cli.svd_top): the whole spectrum stays on disk."""
        if rank:
            return cls(loaded, top_factors(loaded, targets, rank), rule, rank, **options)
        return cls(loaded, decompose(loaded, list(targets), resident=False).factors, rule, **options)

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        return self.delta

    @property
    def parameters(self) -> list[torch.Tensor]:
        return list(self.delta.values())

    def z(self) -> dict[str, torch.Tensor]:
        """1 + δ, padded with ones to each matrix's full rank."""
        return {
            name: torch.nn.functional.pad(1 + d.detach(), (0, self.full_ranks[name] - d.numel()), value=1.0)
            for name, d in self.delta.items()
        }

    def snapshot(self) -> dict[str, torch.Tensor]:
        return self.z()

    def expert_z(self, snapshot: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(snapshot)

    def write_files(self, snapshot: Mapping[str, torch.Tensor], folder: Path) -> dict[str, Path]:
        return {}

    def _changes(self) -> dict[str, torch.Tensor]:
        return {name: side_path.side_change(self.sides[name], d, self.rule) for name, d in self.delta.items()}

    @contextmanager
    def serving(self, engine: Engine, adapted: bool = True) -> Iterator[None]:
        """The engine's model generates as the current policy (or the base) inside, then the base is back."""
        if self.sharded:
            with torch.no_grad():
                changes = self._changes() if adapted else {}
            with side_path.attached(self.loaded.model, changes):
                yield
            return
        engine.set_expert(self.z() if adapted else None, self.rule)
        try:
            yield
        finally:
            engine.set_expert(None)

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        recompute = decoder_layers(self.loaded.model) if self.recompute else ()
        with side_path.attached(self.loaded.model, self._changes(), recompute=recompute, kept=self.kept):
            return final_hidden(self.loaded.model, ids, mask, positions, keep, self.loaded.device)

    @torch.no_grad()
    def base_hidden(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        return final_hidden(self.loaded.model, ids, mask, positions, keep, self.loaded.device)
