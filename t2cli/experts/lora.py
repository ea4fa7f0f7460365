"""LoRA experts (the baseline SVF is compared with) stored in PEFT's own adapter format."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from t2cli.errors import BadInputError, NotFoundError
from t2cli.models.loading import shared_copy

if TYPE_CHECKING:
    from t2cli.experts.manifest import Manifest


ADAPTER_FORMAT = "peft-lora"


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise NotFoundError("LoRA needs the peft package; run: pip install 't2cli[lora]'") from None


def adapter_provenance(rank: int) -> dict[str, Any]:
    """What a LoRA expert's provenance records under `adapter`."""
    return {"format": ADAPTER_FORMAT, "rank": rank, "alpha": rank, "files": list(ADAPTER_FILES)}


def is_lora_expert(manifest: Manifest) -> bool:
    """Whether the expert's behaviour lives in a PEFT adapter (its z is then the identity)."""
    adapter = manifest.provenance.get("adapter")
    return isinstance(adapter, dict) and adapter.get("format") == ADAPTER_FORMAT


def load_lora_adapter(model: torch.nn.Module, expert_folder: Path, *, fingerprint: str | None = None) -> Any:
    """The base model with a LoRA expert's adapter applied (a `peft.PeftModel`; `model` is untouched).

    The expert folder is verified first (manifest, checksums of z and of the adapter files, and the
    base model's fingerprint when given). `with peft_model.disable_adapter():` gives the base back.
    """
    from t2cli.experts.files import load_expert

    manifest = load_expert(Path(expert_folder), fingerprint=fingerprint).manifest
    if not is_lora_expert(manifest):
        raise BadInputError(f"expert {manifest.ref} is an SVF expert, not a LoRA one; apply its z instead")
    require_peft()
    from peft import PeftModel

    return PeftModel.from_pretrained(shared_copy(model), str(expert_folder))
