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

Per-row experts (`t2_rows`, vLLM on CPU): each expert is swapped in once and every adapted layer's CPU
kernel (`cpu_linear`, which holds its own packed copy of W'(z)) is kept, then the base goes back in.
Each adapted layer's `cpu_linear` becomes a dispatcher that multiplies each token by its request's
kernel: the request names its expert in `SamplingParams.extra_args`, and the model runner's
`_prepare_inputs` (wrapped once) lays the step's requests out token by token, as vLLM's own LoRA
mapping does. A token costs one model's multiply-adds, but a step reads the weights of every expert it
mixes: on 2 CPU cores that made rows slower than swapping per group (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from t2cli.errors import EngineError, IntegrityError
from t2cli.svd import probe_error, probe_tolerance
from t2cli.svf import Factors, adapted_weight


@dataclass
class SwapState:
    """What one worker holds between swaps."""

    base: dict[str, torch.Tensor] = field(default_factory=dict)
    factors: dict[str, Factors] = field(default_factory=dict)
    # Names whose live weights differ from the base: the next swap must restore them.
    adapted: set[str] = field(default_factory=set)


# The `SamplingParams.extra_args` key under which a request names its row expert (absent: the base weights).
ROW_EXPERT_KEY = "t2_expert"

# A layer's CPU kernel as vLLM calls it, `kernel(x, weight, bias)`, and the weight it is to be called with.
Kernel = tuple[Callable[..., torch.Tensor], torch.Tensor]


@dataclass
class RowState:
    """Per-row experts on one worker: every held expert's kernels, and the current step's token layout."""

    experts: dict[str, dict[str, Kernel]] = field(default_factory=dict)  # the last batch's experts
    base: dict[str, Kernel] = field(default_factory=dict)  # module name → the base weights' kernel
    token_experts: list[str | None] = field(default_factory=list)  # the step's expert key per token
    _groups: dict[int, list[tuple[str | None, torch.Tensor]] | None] = field(default_factory=dict)

    def begin_step(self, request_experts: Sequence[str | None], tokens_per_request: Sequence[int]) -> None:
        self.token_experts = [
            key for key, count in zip(request_experts, tokens_per_request, strict=True) for _ in range(count)
        ]
        self._groups = {}

    def groups(self, tokens: int) -> list[tuple[str | None, torch.Tensor]] | None:
        """(expert key, token indices) for a forward over `tokens` tokens (any beyond the step's are padding,
        computed with the base); None when every token takes the base."""
        if tokens not in self._groups:
            keys = (self.token_experts + [None] * tokens)[:tokens]
            if not any(keys):
                self._groups[tokens] = None
            else:
                indices: dict[str | None, list[int]] = {}
                for position, key in enumerate(keys):
                    indices.setdefault(key, []).append(position)
                self._groups[tokens] = [(key, torch.tensor(found)) for key, found in indices.items()]
        return self._groups[tokens]

    def kernel(self, module_name: str, key: str | None) -> Kernel:
        return self.base[module_name] if key is None else self.experts[key].get(module_name, self.base[module_name])


def _current_kernel(module: torch.nn.Module) -> Kernel:
    """The kernel a CPU linear layer computes with now. Most hold their own packed weights and empty
    `weight`; the plain-torch fallback reads `weight`, so that one is copied."""
    weight = module.weight
    return module.cpu_linear, (weight.detach().clone() if weight.numel() else weight)


def _row_dispatcher(state: RowState, module_name: str) -> Callable[..., torch.Tensor]:
    def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        groups = state.groups(x.shape[0])
        if groups is None or len(groups) == 1:
            kernel, own_weight = state.kernel(module_name, None if groups is None else groups[0][0])
            return kernel(x, own_weight, bias)
        out: torch.Tensor | None = None
        for key, index in groups:
            kernel, own_weight = state.kernel(module_name, key)
            part = kernel(x.index_select(0, index), own_weight, bias)
            if out is None:
                out = part.new_empty((x.shape[0], part.shape[-1]))
            out.index_copy_(0, index, part)
        assert out is not None
        return out

    linear.t2_rows = True  # type: ignore[attr-defined]
    return linear


def fused_module(name: str, packed_modules: dict[str, list[str]]) -> str:
    """vLLM's module for a checkpoint weight: "model.layers.0.self_attn.qkv_proj" for "…q_proj.weight"."""
    module_path, leaf, _ = _split(name)
    for fused, members in packed_modules.items():
        if leaf in members:
            leaf = fused
            break
    return f"{module_path}.{leaf}" if module_path else leaf


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

        def weights() -> Iterator[tuple[str, torch.Tensor]]:
            # Built as vLLM asks for them, layer by layer: each W'(z) is freed once its layer is repacked,
            # so a swap reuses a layer's worth of memory instead of touching a whole model's fresh pages
            # (half a first swap's time on 2 CPU cores, docs/benchmarks.md).
            for name in sorted(touched):
                weight, vector = state.base[name], vectors.get(name)
                if vector is not None:
                    weight = adapted_weight(weight, state.factors[name], vector.to(weight.device), rule)
                yield name, weight

        self.reload_weights(weights_iterator=weights(), is_checkpoint_format=True)  # type: ignore[attr-defined]
        state.adapted = {name for name, vector in vectors.items() if not bool(torch.all(vector == 1))}
        return len(touched)

    def _t2_rows(self) -> RowState:
        """The worker's row state; the first call wraps the model runner so that every step lays out its
        requests' experts token by token before the forward."""
        state = getattr(self, "_t2_row_state", None)
        if state is None:
            state = RowState()
            runner = self.model_runner
            prepare = runner._prepare_inputs

            def prepare_with_rows(scheduler_output: Any, num_scheduled_tokens: Any, *args: Any, **kwargs: Any) -> Any:
                prepared = prepare(scheduler_output, num_scheduled_tokens, *args, **kwargs)
                counts = [int(count) for count in num_scheduled_tokens]
                requests = [runner.requests[request] for request in runner.input_batch.req_ids[: len(counts)]]
                state.begin_step([_row_expert(request.sampling_params) for request in requests], counts)
                return prepared

            runner._prepare_inputs = prepare_with_rows
            self._t2_row_state = state
        return state

    def t2_rows(self, experts: list[tuple[str, dict[str, list[float]] | None, str]]) -> list[str]:
        """Hold these experts, and only these, for a per-row batch: (key, z, rule), z only for keys not held
        yet. The base weights must be live. Returns the keys held."""
        swap, rows = self._t2_state(), self._t2_rows()
        if swap.adapted:
            raise EngineError("per-row experts need the base weights live; swap the base in first")
        model = self.model_runner.get_model()
        packed = self._t2_packed_modules()
        for key, z, rule in experts:
            if key in rows.experts:
                continue
            if z is None:
                raise EngineError(f"row expert {key} is not held by the worker; send its z")
            names = {fused_module(name, packed) for name in z}
            self.t2_swap(z, rule)
            try:
                rows.experts[key] = {name: _current_kernel(_cpu_linear_module(model, name)) for name in names}
            finally:
                self.t2_swap(None, rule)
        wanted = {key for key, _, _ in experts}
        rows.experts = {key: kernels for key, kernels in rows.experts.items() if key in wanted}
        # Reloads replaced some layers' kernels (the dispatcher with them): take the new base kernels.
        for name in {name for kernels in rows.experts.values() for name in kernels}:
            module = _cpu_linear_module(model, name)
            if not getattr(module.cpu_linear, "t2_rows", False):
                rows.base[name] = _current_kernel(module)
                module.cpu_linear = _row_dispatcher(rows, name)
        return list(rows.experts)


def _row_expert(params: Any) -> str | None:
    extra = getattr(params, "extra_args", None) or {}
    return extra.get(ROW_EXPERT_KEY)


def _cpu_linear_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if module is None or not hasattr(module, "cpu_linear"):
        raise EngineError(f"vLLM's model has no CPU linear layer {name}; per-row experts need vLLM's CPU kernels")
    return module
