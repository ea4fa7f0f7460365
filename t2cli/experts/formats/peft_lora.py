"""`peft-lora`: an SVF expert's change ΔW = U diag(s' − s) Vh truncated to its best rank k (see
`t2cli.experts.fidelity` and `t2cli.experts.export.lora_factors`), as B = U_k diag(s' − s)_k and A = Vh_k
with lora_alpha = r (scaling 1). `PeftModel.from_pretrained` and vLLM's `LoRARequest` load the folder as
is. A LoRA expert's own adapter is copied unchanged."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from t2cli.config import t2_home
from t2cli.errors import T2Error
from t2cli.experts.export import expert_factors, lora_config, lora_factors
from t2cli.experts.files import Expert
from t2cli.experts.formats.base import ExportResult, model_card, staged, write_record
from t2cli.experts.lora import ADAPTER_FILES, is_lora_expert, require_peft
from t2cli.models.loading import LoadedModel, shared_copy
from t2cli.svf import Factors


class PeftLoraFormat:
    name = "peft-lora"
    budget = True

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
        if is_lora_expert(expert.manifest):
            return copy_lora_expert(expert, expert_folder, output, loaded.source or loaded.model_id)
        return export_peft(loaded, expert, factors, output, rank=rank, energy=energy)

    @classmethod
    def load(cls, loaded: LoadedModel, folder: Path) -> LoadedModel:
        require_peft()
        from peft import PeftModel

        return replace(loaded, model=PeftModel.from_pretrained(shared_copy(loaded.model), str(folder)).eval())

    @classmethod
    def cached(cls, loaded: LoadedModel, expert: Expert, expert_folder: Path, rank: int) -> Path:
        """Beyond `ExportFormat`: the adapter that answers for the expert in a mixed batch (`cached_lora`)."""
        return cached_lora(loaded, expert, expert_factors(loaded, expert), expert_folder, rank)


def export_peft(
    loaded: LoadedModel,
    expert: Expert,
    factors: Mapping[str, Factors],
    output: Path,
    *,
    rank: int | None = None,
    energy: float | None = None,
) -> ExportResult:
    """Write an SVF expert as a PEFT LoRA folder (adapter_config.json, adapter_model.safetensors, README.md)."""
    require_peft()
    from safetensors.torch import save_file

    lora = lora_factors(expert, factors, rank=rank, energy=energy)
    base_model = loaded.source or loaded.model_id
    with staged(output) as folder:
        save_file(lora.tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        lora_config(lora.ranks, base_model).save_pretrained(str(folder))
        body = f"Rank {lora.report.overall().max_rank} LoRA of an SVF expert. Fidelity:\n\n{lora.report.markdown()}"
        (folder / "README.md").write_text(model_card(expert, base_model, body))
        write_record(folder, expert, "peft-lora", {"rank": rank, "energy": energy})
    return ExportResult("peft-lora", Path(output), expert.manifest.ref, lora.report, lora.parameters)


def copy_lora_expert(expert: Expert, expert_folder: Path, output: Path, base_model: str) -> ExportResult:
    """A LoRA expert's adapter, as trained (no truncation, so nothing to report)."""
    with staged(output) as folder:
        for name in ADAPTER_FILES:
            shutil.copyfile(Path(expert_folder) / name, folder / name)
        body = "A LoRA expert, exported as trained (exact)."
        (folder / "README.md").write_text(model_card(expert, base_model, body))
        write_record(folder, expert, "peft-lora", {})
    return ExportResult("peft-lora", Path(output), expert.manifest.ref)


def cached_lora(
    loaded: LoadedModel, expert: Expert, factors: Mapping[str, Factors], expert_folder: Path, rank: int
) -> Path:
    """The expert as a PEFT folder, exported on first use under $T2_HOME/lora (keyed by base model, z
    sha256, rule and rank); a LoRA expert's own folder serves as is."""
    if is_lora_expert(expert.manifest):
        return Path(expert_folder)
    m = expert.manifest
    folder = t2_home() / "lora" / loaded.fingerprint[:12] / f"{m.sha256[:20]}-{m.svf_rule}-r{rank}"
    if not (folder / "adapter_config.json").exists():
        try:
            export_peft(loaded, expert, factors, folder, rank=rank)
        except T2Error:
            if not (folder / "adapter_config.json").exists():  # not another process finishing first
                raise
    return folder
