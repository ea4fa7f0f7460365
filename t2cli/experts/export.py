"""Export an expert for other runtimes: a standard PEFT LoRA folder, or a merged transformers folder.

- `peft-lora`: an SVF expert's change ΔW = U diag(s' − s) Vh truncated to its best rank k (see
  `t2cli.experts.fidelity`), as B = U_k diag(s' − s)_k and A = Vh_k with lora_alpha = r (scaling 1).
  `PeftModel.from_pretrained` and vLLM's `LoRARequest` load the folder as is. A LoRA expert's own
  adapter is copied unchanged.
- `merged`: W' baked into the weights of a plain transformers checkpoint (config, tokenizer, safetensors).

Folders are written to a staging folder beside the target and renamed into place, so a crash leaves
no half-written export.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from t2cli.config import t2_home
from t2cli.errors import BadInputError, T2Error
from t2cli.experts.fidelity import FidelityReport, kept_components, matrix_fidelity, plan_ranks, spectrum_change
from t2cli.experts.files import Expert
from t2cli.experts.lora import ADAPTER_FILES, is_lora_expert, require_peft
from t2cli.experts.manifest import Manifest
from t2cli.fsutil import default_permissions
from t2cli.models import LoadedModel, drop_gguf_quantizer, load_model, shared_copy
from t2cli.svd import decompose
from t2cli.svf import Factors, LiveAdapter

FORMATS = ("peft-lora", "merged")
PEFT_PREFIX = "base_model.model."
EXPORT_RECORD = "t2_export.json"


def trained_rank(manifest: Manifest) -> int | None:
    """The rank an SVF expert was trained at (`t2 train --rank r`), where its rank-r export is exact."""
    if manifest.provenance.get("kind") != "trained" or is_lora_expert(manifest):
        return None
    rank = (manifest.provenance.get("hyperparameters") or {}).get("rank")
    return rank if isinstance(rank, int) and rank >= 1 else None


def check_request(fmt: str, output: Path, rank: int | None, energy: float | None) -> None:
    """Refuse a bad format, an output folder with files in it, or a budget given to `merged`."""
    if fmt not in FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if output.is_symlink():
        raise BadInputError(f"{output} is a symbolic link; pass a new -o folder (or an empty one) by its real path")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise BadInputError(f"{output} exists and is not an empty folder; pass a new -o folder")
    if fmt == "merged" and (rank is not None or energy is not None):
        raise BadInputError("--rank and --energy apply to --format peft-lora only; drop them for merged")


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


@contextmanager
def staged(output: Path) -> Iterator[Path]:
    """A fresh folder beside `output` that becomes `output` when the block ends without error, with the
    permissions a plain mkdir and open would give (mkdtemp's folder is 0700, safetensors' files 0600).

    When another export took `output` meanwhile (or made it a link or a file), this one is dropped with a
    one-line T2Error: the first finished export stays whole."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        yield staging
        default_permissions(staging)
        try:
            if not output.is_symlink() and output.is_dir() and not any(output.iterdir()):
                output.rmdir()
            os.rename(staging, output)
        except OSError as problem:
            if problem.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            raise T2Error(
                f"{output} was written by another process while this export ran; pass a new -o folder"
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def model_card(expert: Expert, base_model: str, body: str) -> str:
    m = expert.manifest
    return (
        f"---\nbase_model: {base_model}\nlibrary_name: peft\ntags: [t2, transformer-squared, lora]\n---\n\n"
        f"# {m.ref}: {m.description or m.name}\n\n"
        f"Exported by `t2 export` from the t2 expert `{m.ref}` (base fingerprint `{m.base_fingerprint[:12]}`, "
        f"z sha256 `{m.sha256[:12]}`).\n\n{body}\n\n"
        "```python\nfrom peft import PeftModel\nmodel = PeftModel.from_pretrained(base, 'THIS_FOLDER')\n```\n"
    )


def _record(folder: Path, expert: Expert, fmt: str, extra: Mapping[str, Any]) -> None:
    data = {"expert": expert.manifest.ref, "z_sha256": expert.manifest.sha256, "format": fmt, **extra}
    (folder / EXPORT_RECORD).write_text(json.dumps(data, indent=2) + "\n")


@dataclass
class ExportResult:
    format: str
    output: Path
    expert: str
    report: FidelityReport | None = None  # None: exact (merged, or a LoRA expert copied as is)
    parameters: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": self.format, "output": str(self.output), "expert": self.expert}
        if self.report is not None:
            data |= {"parameters": self.parameters, "fidelity": self.report.to_dict()}
        return data


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
        _record(folder, expert, "peft-lora", {"rank": rank, "energy": energy})
    return ExportResult("peft-lora", Path(output), expert.manifest.ref, lora.report, lora.parameters)


def copy_lora_expert(expert: Expert, expert_folder: Path, output: Path, base_model: str) -> ExportResult:
    """A LoRA expert's adapter, as trained (no truncation, so nothing to report)."""
    with staged(output) as folder:
        for name in ADAPTER_FILES:
            shutil.copyfile(Path(expert_folder) / name, folder / name)
        body = "A LoRA expert, exported as trained (exact)."
        (folder / "README.md").write_text(model_card(expert, base_model, body))
        _record(folder, expert, "peft-lora", {})
    return ExportResult("peft-lora", Path(output), expert.manifest.ref)


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
        _record(folder, expert, "merged", {})
    return ExportResult("merged", Path(output), expert.manifest.ref)


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
    """Export in `fmt` (see FORMATS); `factors` cover the expert's targets (unused for LoRA experts)."""
    check_request(fmt, Path(output), rank, energy)
    if fmt == "merged":
        return export_merged(loaded, expert, factors, output, expert_folder)
    if is_lora_expert(expert.manifest):
        return copy_lora_expert(expert, expert_folder, output, loaded.source or loaded.model_id)
    return export_peft(loaded, expert, factors, output, rank=rank, energy=energy)


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


def load_export(loaded: LoadedModel, folder: Path, fmt: str) -> LoadedModel:
    """An exported folder loaded the way other runtimes load it: PEFT over the base, or a plain checkpoint."""
    if fmt == "merged":
        return load_model(str(folder))
    require_peft()
    from peft import PeftModel

    return replace(loaded, model=PeftModel.from_pretrained(shared_copy(loaded.model), str(folder)).eval())
