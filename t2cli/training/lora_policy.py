"""The LoRA baseline's policy: a PEFT adapter on the same matrices, trained with the same objectives."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from t2cli.models.loading import LoadedModel
from t2cli.targets import TargetMatrix

if TYPE_CHECKING:
    from t2cli.engines.hf import HFEngine
from t2cli.experts.lora import ADAPTER_FILES, require_peft
from t2cli.fsutil import staged_folder
from t2cli.models.loading import shared_copy
from t2cli.training.logprobs import final_hidden, output_head


class LoRAPolicy:
    """A PEFT LoRA adapter behind the policy interface the trainer uses (see `SVFPolicy`).

    The engine runs the PEFT-wrapped model (`self.loaded`), so rollouts and validation see the
    live adapter; the base policy is the same model with the adapter disabled.
    """

    def __init__(
        self, loaded: LoadedModel, targets: Sequence[TargetMatrix], rank: int, *, seed: int = 0, recompute: bool = False
    ) -> None:
        require_peft()
        from peft import LoraConfig, get_peft_model

        self.targets = list(targets)
        config = LoraConfig(
            r=rank,
            lora_alpha=rank,
            lora_dropout=0.0,
            bias="none",
            # Full module names: exactly the matrices --targets selected, in any layer subset.
            target_modules=[t.name.removesuffix(".weight") for t in self.targets],
            task_type="CAUSAL_LM",
        )
        # A is drawn at random (B = 0): seeded, so a run is reproducible and every process draws the same A;
        # the caller's random streams are left as they were.
        gpus = sorted({p.device.index for p in loaded.model.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=gpus):
            torch.manual_seed(seed)
            self.model = get_peft_model(shared_copy(loaded.model), config)
        if recompute:  # activation checkpointing, as SVFPolicy's `recompute`
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.loaded = replace(loaded, model=self.model)
        self.trainable = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        self.head = output_head(self.model)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return list(self.trainable.values())

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.trainable.items()}

    @torch.no_grad()
    def load(self, snapshot: Mapping[str, torch.Tensor]) -> None:
        for name, p in self.trainable.items():
            p.copy_(snapshot[name])

    @contextmanager
    def serving(self, engine: HFEngine, adapted: bool = True) -> Iterator[None]:
        """The engine (built on `self.loaded`) generates with the adapter, or as the base model."""
        if adapted:
            yield
            return
        with self.model.disable_adapter():
            yield

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        return final_hidden(self.model, ids, mask, positions, keep, self.loaded.device)

    @torch.no_grad()
    def base_hidden(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        with self.model.disable_adapter():
            return self.hidden(ids, mask, positions, keep)

    def expert_z(self, snapshot: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The identity on every target: a LoRA expert's behaviour is in its adapter files."""
        return {t.name: torch.ones(t.rank) for t in self.targets}

    def write_files(self, snapshot: Mapping[str, torch.Tensor], folder: Path) -> dict[str, Path]:
        """Save `snapshot` as a PEFT adapter folder (replaced whole); return registry name -> path."""
        current = self.snapshot()
        folder = Path(folder)
        try:
            self.load(snapshot)
            with staged_folder(folder, replace=True) as staging:
                self.model.save_pretrained(str(staging))
        finally:
            self.load(current)
        return {name: folder / name for name in ADAPTER_FILES}
