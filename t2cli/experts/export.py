"""Exporting an expert for other runtimes (`t2 export`): the request's checks, the budget a format takes,
and the LoRA form of an SVF expert that `peft-lora` writes and mixed batches serve.

Formats are plug-ins (t2cli.experts.formats): `peft-lora` (a PEFT adapter, the delta's best rank-k
form) and `merged` (W' baked into a transformers checkpoint) are t2's own. Folders are written to a
staging folder beside the target and renamed into place, so a crash leaves no half-written export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from t2cli.errors import BadInputError
from t2cli.experts.fidelity import (
    FidelityReport,
    check_budget,
    kept_components,
    matrix_fidelity,
    plan_ranks,
    spectrum_change,
)
from t2cli.experts.files import Expert
from t2cli.experts.formats import EXPORTERS
from t2cli.experts.lora import is_lora_expert
from t2cli.experts.manifest import Manifest
from t2cli.svd import decompose
from t2cli.svf import Factors

if TYPE_CHECKING:
    from t2cli.experts.formats.base import ExportResult
    from t2cli.models.loading import LoadedModel

PEFT_PREFIX = "base_model.model."


def trained_rank(manifest: Manifest) -> int | None:
    """The rank an SVF expert was trained at (`t2 train --rank r`), where its rank-r export is exact."""
    if manifest.provenance.get("kind") != "trained" or is_lora_expert(manifest):
        return None
    rank = (manifest.provenance.get("hyperparameters") or {}).get("rank")
    return rank if isinstance(rank, int) and rank >= 1 else None


def budget_formats() -> list[str]:
    """The formats that take --rank/--energy."""
    return [name for name, plugin in EXPORTERS.loaded() if plugin.budget]


def check_request(fmt: str, output: Path, rank: int | None, energy: float | None) -> None:
    """Refuse a bad format, an output folder with files in it, or a budget given to an exact format."""
    if fmt not in EXPORTERS:
        raise BadInputError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORTERS.names())}")
    if output.is_symlink():
        raise BadInputError(f"{output} is a symbolic link; pass a new -o folder (or an empty one) by its real path")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise BadInputError(f"{output} exists and is not an empty folder; pass a new -o folder")
    if not EXPORTERS.get(fmt).budget and (rank is not None or energy is not None):
        takers = " or ".join(budget_formats())
        raise BadInputError(f"--rank and --energy apply to --format {takers} only; drop them for {fmt}")


def planned_budget(fmt: str, manifest: Manifest, rank: int | None, energy: float | None) -> tuple[int | None, bool]:
    """(rank, whether the export is truncated): a budgeted format exporting an SVF expert takes the rank
    it was trained at when neither --rank nor --energy is given (exact then); the budget is checked."""
    if not EXPORTERS.get(fmt).budget or is_lora_expert(manifest):
        return rank, False
    if rank is None and energy is None:
        rank = trained_rank(manifest)
    check_budget(rank, energy)
    return rank, True


def check_outside_registry(output: Path, root: Path) -> None:
    """Refuse an -o inside the registry: a folder there would pass for a version (and fail `registry verify`)."""
    target, registry = Path(output).expanduser().resolve(), Path(root).expanduser().resolve()
    if target == registry or target.is_relative_to(registry):
        raise BadInputError(
            f"-o {output} is inside the registry {root}, which holds only published versions; export elsewhere"
        )


def module_name(parameter: str) -> str:
    return parameter.removesuffix(".weight")


@dataclass
class LoraFactors:
    """A rank-k LoRA of an SVF expert: PEFT-named tensors, each module's rank, and the fidelity report."""

    tensors: dict[str, torch.Tensor]
    ranks: dict[str, int]  # by module name
    report: FidelityReport

    @property
    def parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


def expert_spectra(expert: Expert, factors: Mapping[str, Factors]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(c = s' − s, s') of every matrix the expert adapts, in name order."""
    rule = expert.manifest.svf_rule
    return {name: spectrum_change(factors[name], z, rule) for name, z in sorted(expert.z.items())}


def planned_spectra(
    expert: Expert, factors: Mapping[str, Factors], rank: int | None, energy: float | None
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, int]]:
    """The expert's spectra (c, s') and the rank each matrix keeps under the budget."""
    spectra = expert_spectra(expert, factors)
    return spectra, plan_ranks({name: change for name, (change, _) in spectra.items()}, rank=rank, energy=energy)


def lora_factors(
    expert: Expert, factors: Mapping[str, Factors], *, rank: int | None = None, energy: float | None = None
) -> LoraFactors:
    """B = U_k diag(c_k), A = Vh_k for the k components of c = s' − s largest in magnitude, per matrix."""
    spectra, ranks = planned_spectra(expert, factors, rank, energy)
    tensors: dict[str, torch.Tensor] = {}
    fidelity = []
    for name, (change, adapted) in spectra.items():
        keep = kept_components(change, ranks[name])
        f = factors[name]
        prefix = f"{PEFT_PREFIX}{module_name(name)}"
        tensors[f"{prefix}.lora_A.weight"] = f.Vh[keep].float().contiguous()
        tensors[f"{prefix}.lora_B.weight"] = (f.U[:, keep].float() * change[keep]).contiguous()
        fidelity.append(matrix_fidelity(name, expert.manifest.targets[name].role, change, adapted, ranks[name]))
    return LoraFactors(tensors, {module_name(n): k for n, k in ranks.items()}, FidelityReport(fidelity))


def lora_equivalent_z(
    expert: Expert, factors: Mapping[str, Factors], *, rank: int | None = None, energy: float | None = None
) -> dict[str, torch.Tensor]:
    """The z whose W'(z) under the `none` rule is exactly what the rank-k LoRA export adds to W.

    W + B A = U diag(s + c_k) Vh, with c_k = c on the kept components and 0 elsewhere, so
    z = 1 + c_k / s. Any engine that takes SVF experts can then score
    an export at full speed, without PEFT."""
    spectra, ranks = planned_spectra(expert, factors, rank, energy)
    vectors = {}
    for name, (change, _) in spectra.items():
        s = factors[name].S.float().to(change.device)
        kept = torch.zeros_like(change)
        keep = kept_components(change, ranks[name])
        kept[keep] = change[keep]
        vectors[name] = 1 + kept / s.clamp_min(torch.finfo(s.dtype).tiny)  # s = 0 has c = 0: z stays 1
    return vectors


def lora_config(ranks: Mapping[str, int], base_model: str) -> Any:
    """PEFT's own config: r = the largest rank, lora_alpha = r (scaling 1). Matrices of other ranks are
    listed in rank_pattern with alpha_pattern equal to their rank, so every module's scaling stays 1."""
    from peft import LoraConfig

    r = max(ranks.values())
    pattern = {name: k for name, k in sorted(ranks.items()) if k != r}
    return LoraConfig(
        r=r,
        lora_alpha=r,
        target_modules=sorted({name.rsplit(".", 1)[-1] for name in ranks}),
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    )


def expert_factors(loaded: LoadedModel, expert: Expert) -> dict[str, Factors]:
    """The SVD factors of the matrices an SVF expert adapts (none for a LoRA expert)."""
    if is_lora_expert(expert.manifest):
        return {}
    return decompose(loaded, [t for t in loaded.targets if t.name in expert.z]).factors


def export_expert(
    loaded: LoadedModel,
    expert: Expert,
    factors: Mapping[str, Factors],
    expert_folder: Path,
    output: Path,
    fmt: str,
    *,
    rank: int | None = None,
    energy: float | None = None,
) -> ExportResult:
    """Export in the registered format `fmt`; `factors` cover the expert's targets (unused for LoRA experts)."""
    check_request(fmt, Path(output), rank, energy)
    return EXPORTERS.get(fmt).export(loaded, expert, factors, expert_folder, output, rank=rank, energy=energy)


def load_export(loaded: LoadedModel, folder: Path, fmt: str) -> LoadedModel:
    """An exported folder loaded the way other runtimes load it (PEFT over the base, a plain checkpoint...)."""
    return EXPORTERS.get(fmt).load(loaded, folder)
