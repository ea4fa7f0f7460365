"""The LoRA baseline: PEFT adapters on the matrices SVF targets, trained by the same objective.

For a targeted matrix W (m × n) LoRA learns W' = W + (α/r)·B·A with A (r × n) and B (m × r).
B starts at zero, so training starts from the base model exactly as z = 1 does; it trains
r·(m + n) numbers per matrix where SVF trains min(m, n), the comparison the paper makes. t2 uses
α = r (scale 1): the update is B·A itself, whatever the rank.

The adapter is PEFT's own (`peft.get_peft_model`) and is saved in PEFT's format
(`adapter_config.json` + `adapter_model.safetensors`), so any PEFT-aware tool loads it. In the
registry it sits beside an identity z (z = 1: the base weights, so a tool that knows only SVF sees
the base model, never a wrong one) and a manifest whose provenance names the adapter; the
manifest's checksums cover the adapter files, so `t2 registry verify` checks them too.
"""

from __future__ import annotations

import copy
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from t2cli.errors import BadInputError, NotFoundError
from t2cli.models import LoadedModel, TargetMatrix

if TYPE_CHECKING:
    from t2cli.engines.hf import HFEngine
    from t2cli.expert import Manifest

ADAPTER_FORMAT = "peft-lora"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
DEFAULT_RANK = 16


def require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise NotFoundError("LoRA needs the peft package; run: pip install 't2cli[lora]'") from None


def shared_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the module tree that shares every parameter and buffer with `model`.

    PEFT injects its layers by replacing modules in place; doing that on this copy leaves the
    caller's model untouched (its parameter names, its outputs), and sharing the tensors costs no
    memory however large the base is.
    """
    memo: dict[int, Any] = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def adapter_provenance(rank: int) -> dict[str, Any]:
    """What a LoRA expert's provenance records under `adapter`."""
    return {"format": ADAPTER_FORMAT, "rank": rank, "alpha": rank, "files": list(ADAPTER_FILES)}


def is_lora_expert(manifest: Manifest) -> bool:
    """Whether the expert's behaviour lives in a PEFT adapter (its z is then the identity)."""
    adapter = manifest.provenance.get("adapter")
    return isinstance(adapter, dict) and adapter.get("format") == ADAPTER_FORMAT


class LoRAPolicy:
    """A PEFT LoRA adapter behind the policy interface the trainer uses (see `SVFPolicy`).

    The engine runs the PEFT-wrapped model (`self.loaded`), so rollouts and validation see the
    live adapter; the base policy is the same model with the adapter disabled.
    """

    def __init__(self, loaded: LoadedModel, targets: Sequence[TargetMatrix], rank: int, *, seed: int = 0) -> None:
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
        self.loaded = replace(loaded, model=self.model)
        self.trainable = {name: p for name, p in self.model.named_parameters() if p.requires_grad}

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
    def step(self) -> Iterator[None]:
        """Nothing to materialise: gradients reach A and B directly through PEFT's layers."""
        yield

    @contextmanager
    def serving(self, engine: HFEngine, adapted: bool = True) -> Iterator[None]:
        """The engine (built on `self.loaded`) generates with the adapter, or as the base model."""
        if adapted:
            yield
            return
        with self.model.disable_adapter():
            yield

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep)
        return out.logits.float()

    @torch.no_grad()
    def base_logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        with self.model.disable_adapter():
            return self.logits(ids, mask, positions, keep)

    def expert_z(self, snapshot: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The identity on every target: a LoRA expert's behaviour is in its adapter files."""
        return {t.name: torch.ones(t.rank) for t in self.targets}

    def write_files(self, snapshot: Mapping[str, torch.Tensor], folder: Path) -> dict[str, Path]:
        """Save `snapshot` as a PEFT adapter folder (replaced whole); return registry name -> path."""
        current = self.snapshot()
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            self.load(snapshot)
            self.model.save_pretrained(str(staging))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            self.load(current)
        return {name: folder / name for name in ADAPTER_FILES}


def load_lora_adapter(model: torch.nn.Module, expert_folder: Path, *, fingerprint: str | None = None) -> Any:
    """The base model with a LoRA expert's adapter applied (a `peft.PeftModel`; `model` is untouched).

    The expert folder is verified first (manifest, checksums of z and of the adapter files, and the
    base model's fingerprint when given). `with peft_model.disable_adapter():` gives the base back.
    """
    from t2cli.expert import load_expert

    manifest = load_expert(Path(expert_folder), fingerprint=fingerprint).manifest
    if not is_lora_expert(manifest):
        raise BadInputError(f"expert {manifest.ref} is an SVF expert, not a LoRA one; apply its z instead")
    require_peft()
    from peft import PeftModel

    return PeftModel.from_pretrained(shared_copy(model), str(expert_folder))
