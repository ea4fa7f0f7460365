"""`merged`: W' baked into the weights of a plain transformers checkpoint (config, tokenizer, safetensors)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from t2cli.experts.files import Expert
from t2cli.experts.formats.base import ExportResult, staged, write_record
from t2cli.experts.lora import is_lora_expert, require_peft
from t2cli.models.builtin import drop_gguf_quantizer
from t2cli.models.loading import LoadedModel, load_model
from t2cli.svf import Factors, LiveAdapter


class MergedFormat:
    name = "merged"
    budget = False

    @classmethod
    def export(
        cls,
        loaded: LoadedModel,
        expert: Expert,
        factors: Mapping[str, Factors],
        expert_folder: Path,
        output: Path,
        *,
        rank: int | None = None,
        energy: float | None = None,
    ) -> ExportResult:
        return export_merged(loaded, expert, factors, output, expert_folder)

    @classmethod
    def load(cls, loaded: LoadedModel, folder: Path) -> LoadedModel:
        return load_model(str(folder))


def _save_checkpoint(model: torch.nn.Module, tokenizer: Any, folder: Path) -> None:
    drop_gguf_quantizer(model)
    model.save_pretrained(str(folder), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def export_merged(
    loaded: LoadedModel, expert: Expert, factors: Mapping[str, Factors], output: Path, expert_folder: Path
) -> ExportResult:
    """A transformers checkpoint with W' in place of W (the loaded model is back on its base weights after)."""
    with staged(output) as folder:
        if is_lora_expert(expert.manifest):
            require_peft()
            from peft import PeftModel

            # merge_and_unload writes into the weights, so it works on a copy, not on `loaded.model`.
            merged = PeftModel.from_pretrained(copy.deepcopy(loaded.model), str(expert_folder)).merge_and_unload()
            _save_checkpoint(merged, loaded.tokenizer, folder)
        else:
            adapter = LiveAdapter(loaded.model, factors, expert.manifest.svf_rule)
            adapter.apply(expert.z)
            try:
                _save_checkpoint(loaded.model, loaded.tokenizer, folder)
            finally:
                adapter.restore()
        write_record(folder, expert, "merged", {})
    return ExportResult("merged", Path(output), expert.manifest.ref)
