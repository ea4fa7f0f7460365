"""t2's extension of vLLM's worker: SVF experts swapped into the running model in place.

vLLM mixes this class into its worker (`worker_extension_cls`); the driver calls the `t2_*` methods
through `LLM.collective_rpc`, which serialises arguments with msgpack, so only names, paths and
lists of floats cross that line, never tensors. The worker keeps, for every prepared target, its
base weight (read from the checkpoint through vLLM's own loader) and its U, s, Vh (read from t2's
SVD cache, never recomputed, in the cache's dtype). A swap receives z alone, builds W'(z) in delta form in fp32, and
hands checkpoint-named tensors to `reload_weights`, which lets vLLM repack them into whatever
kernel layout it uses (CPU kernels do not read the parameters a plain copy would write).

Fused projections (q/k/v into qkv_proj, gate/up into gate_up_proj) are reloaded as whole groups:
a partial group would leave the fused kernel half-built, so unadapted siblings go in unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from t2cli.errors import IntegrityError
from t2cli.svd import probe_error, probe_tolerance
from t2cli.svf import Factors, adapted_weight


@dataclass
class SwapState:
    """What one worker holds between swaps."""

    base: dict[str, torch.Tensor] = field(default_factory=dict)
    factors: dict[str, Factors] = field(default_factory=dict)
    # Names whose live weights differ from the base: the next swap must restore them.
    adapted: set[str] = field(default_factory=set)


def fused_siblings(name: str, packed_modules: dict[str, list[str]]) -> list[str]:
    """Every checkpoint name loaded into the same fused parameter as `name` (itself included)."""
    module_path, leaf, suffix = _split(name)
    for members in packed_modules.values():
        if leaf in members:
            return [f"{module_path}.{member}.{suffix}" if module_path else f"{member}.{suffix}" for member in members]
    return [name]


def _split(name: str) -> tuple[str, str, str]:
    """("model.layers.0.self_attn", "q_proj", "weight") from "model.layers.0.self_attn.q_proj.weight"."""
    head, suffix = name.rsplit(".", 1)
    module_path, _, leaf = head.rpartition(".")
    return module_path, leaf, suffix


def _read_factors(cache_path: Path, names: Iterable[str], device: torch.device) -> dict[str, Factors]:
    from safetensors import safe_open

    found: dict[str, Factors] = {}
    with safe_open(str(cache_path), framework="pt") as handle:
        keys = set(handle.keys())
        for name in names:
            parts = [f"{name}.{part}" for part in ("U", "S", "Vh")]
            if not all(part in keys for part in parts):
                raise IntegrityError(f"SVD cache {cache_path} has no factors for {name}; run `t2 decompose`")
            # Kept in the cache's dtype (fp32 or 16-bit): W'(z) is built in fp32 one matrix at a time.
            found[name] = Factors(*(handle.get_tensor(part).to(device) for part in parts))
    return found


class SVFWorkerExtension:
    """Methods vLLM adds to its worker class; `self` is the worker (it has `model_runner`, `device`)."""

    model_runner: Any
    vllm_config: Any

    def _t2_state(self) -> SwapState:
        state = getattr(self, "_t2_swap_state", None)
        if state is None:
            state = SwapState()
            self._t2_swap_state = state
        return state

    def _t2_packed_modules(self) -> dict[str, list[str]]:
        return dict(getattr(self.model_runner.get_model(), "packed_modules_mapping", {}) or {})

    def t2_prepare(self, cache_path: str, names: list[str]) -> int:
        """Hold base weights (with fused siblings) and factors for `names`; returns how many are held.

        Each matrix's checkpoint weight is probed against its factors, so a cache made for other
        weights is refused here rather than silently adapting the wrong basis.
        """
        from vllm.model_executor.model_loader import get_model_loader

        state = self._t2_state()
        device = torch.device(getattr(self, "device", "cpu"))
        new = [name for name in names if name not in state.factors]
        if not new:
            return len(state.factors)
        packed = self._t2_packed_modules()
        wanted = {sibling for name in new for sibling in fused_siblings(name, packed)} - set(state.base)
        loader = get_model_loader(self.vllm_config.load_config)
        for name, weight in loader.get_all_weights(self.vllm_config.model_config, self.model_runner.get_model()):
            if name in wanted:
                state.base[name] = weight.detach().to(device, copy=True)
        missing = sorted(wanted - set(state.base))
        if missing:
            raise IntegrityError(f"the checkpoint vLLM loaded has no {missing[0]}; is it the model t2 decomposed?")
        factors = _read_factors(Path(cache_path), new, device)
        generator = torch.Generator().manual_seed(0)
        for name, factor in factors.items():
            cpu_factor = Factors(factor.U.cpu(), factor.S.cpu(), factor.Vh.cpu())
            weight = state.base[name].cpu()
            if probe_error(weight, cpu_factor, generator) > probe_tolerance(factor.U.dtype, weight.dtype):
                raise IntegrityError(
                    f"SVD cache {cache_path} does not reproduce vLLM's {name}; the engines load different weights"
                )
        state.factors.update(factors)
        return len(state.factors)

    def t2_swap(self, z: dict[str, list[float]] | None, rule: str) -> int:
        """Load W'(z) for the matrices z names and the base for the rest that were adapted before.

        Returns the number of checkpoint tensors reloaded (fused siblings included).
        """
        state = self._t2_state()
        vectors = {name: torch.tensor(values, dtype=torch.float32) for name, values in (z or {}).items()}
        unknown = sorted(set(vectors) - set(state.factors))
        if unknown:
            raise IntegrityError(f"{unknown[0]} was not prepared on the worker; call t2_prepare first")
        packed = self._t2_packed_modules()
        touched = {sibling for name in set(vectors) | state.adapted for sibling in fused_siblings(name, packed)}
        if not touched:
            return 0
        weights: list[tuple[str, torch.Tensor]] = []
        for name in sorted(touched):
            base = state.base[name]
            if name in vectors:
                vector = vectors[name].to(base.device)
                weights.append((name, adapted_weight(base, state.factors[name], vector, rule)))
            else:
                weights.append((name, base))
        self.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)  # type: ignore[attr-defined]
        state.adapted = {name for name, vector in vectors.items() if not bool(torch.all(vector == 1))}
        return len(weights)
