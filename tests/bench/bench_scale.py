"""Benchmark: SVD, decomposition memory and one SVF training step on a random Llama-3-8B-shaped model.

    PYTHONPATH=. python tests/bench/bench_scale.py [--device cpu|cuda] [--dtype float32|bfloat16] [--layers 2]

Builds a random Llama with Llama-3-8B's layer shapes (hidden 4096, MLP 14336, 32 query / 8 KV
heads, vocab 128256) and `--layers` layers, saves it as a bf16 safetensors checkpoint (as Meta
ships it) in a temporary folder, and loads it the way t2 does (`load_model`, `--device`/`--dtype`).
Rows, each measured and (where it applies) predicted by `tests/bench/memory_plan.py`:
- load: seconds and peak memory;
- decompose: every targeted matrix streamed from the checkpoint into a cache of `--cache-dtype` with
  the first of `--drivers`, its peak memory next to the model's size (streaming never holds a second
  model), and the fastest matrix of each shape (read, factorise, check, write);
- svd SHAPE DRIVER: each further driver timed on one matrix of each shape, with its relative error.
A training step on the same shapes is measured by `tests/bench/bench_train_memory.py`.
Peak memory is CUDA's max allocated on a GPU, the peak resident set (VmHWM) on the CPU.
Needs torch and transformers only (no vLLM, no t2 install, no network).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built here; nothing may be downloaded
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, when t2 is not installed

import torch

from t2cli.device import peak_memory_mb, reset_peak_memory, resolve_placement
from t2cli.models.loading import load_model
from t2cli.models.matching import parse_roles
from t2cli.svd import DRIVERS, decompose, factorize, reconstruction_error
from tests.bench.memory_plan import LLAMA_3_8B, plan

MB = 2**20


def write_checkpoint(folder: Path, layers: int) -> None:
    """A random Llama-3-8B-shaped model in bf16 safetensors, with a small word-level tokenizer."""
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    shapes = LLAMA_3_8B
    config = LlamaConfig(
        hidden_size=shapes.hidden,
        intermediate_size=shapes.intermediate,
        num_hidden_layers=layers,
        num_attention_heads=shapes.heads,
        num_key_value_heads=shapes.kv_heads,
        vocab_size=shapes.vocab,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16: no fp32 copy of the model ever exists
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(1000)} | {"<unk>": 1000}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), unk_token="<unk>", eos_token="w0"
    )
    tokenizer.save_pretrained(folder)


def timed(device: str, action: Callable[[], object]) -> tuple[object, float, float]:
    """(result, seconds, peak MB) of one call, the peak window starting at the call."""
    gc.collect()
    reset_peak_memory(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = action()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - started, peak_memory_mb(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (as t2 --device)")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (as t2 --dtype)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of Llama-3-8B shape")
    parser.add_argument("--targets", default="all", help="roles to decompose and train (as t2 --targets)")
    parser.add_argument("--drivers", default=",".join(DRIVERS), help="SVD drivers to time per matrix shape")
    parser.add_argument("--cache-dtype", default="float32", help="factors' dtype in the cache (float32, bfloat16)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    place = resolve_placement(args.device, args.dtype)
    roles = parse_roles(args.targets)
    shapes = LLAMA_3_8B.with_layers(args.layers)
    predicted = plan(shapes, dtype=place.dtype, cache_dtype=args.cache_dtype, roles=roles)
    gpu = torch.cuda.get_device_name(place.device) if place.device.startswith("cuda") else "-"
    print(f"{shapes.name}: device {place.device} ({gpu}), dtype {place.dtype}, targets {args.targets}, "
          f"cache {args.cache_dtype}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")  # fmt: skip
    rows = ["| step | seconds | peak MB | measured | predicted (memory_plan.py) |", "|---|---|---|---|---|"]

    def row(label: str, seconds: float, peak: float, measured: str = "", expected: str = "") -> None:
        rows.append(f"| {label} | {seconds:.2f} | {peak:,.0f} | {measured} | {expected} |")
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory(prefix="t2-bench-scale-") as scratch:
        folder = Path(scratch) / "llama-3-8b-shaped"
        _, seconds, _ = timed("cpu", lambda: write_checkpoint(folder, args.layers))
        print(f"random checkpoint written in {seconds:.0f} s", flush=True)
        loaded, seconds, peak = timed(
            place.device, lambda: load_model(str(folder), dtype=place.torch_dtype, device=place.device)
        )
        weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        row("load", seconds, peak, f"weights {weight_bytes / MB:,.0f} MB", f"{predicted.weights / MB:,.0f} MB")
        selected = loaded.select(args.targets)
        drivers = args.drivers.split(",")
        cache = Path(scratch) / "svd"
        marks: list[tuple[tuple[int, int], float]] = []

        def run_decompose() -> object:
            marks.append(((0, 0), time.perf_counter()))
            return decompose(
                loaded,
                selected,
                driver=drivers[0],
                cache_dir=cache,
                cache_dtype=args.cache_dtype,
                resident=False,
                on_matrix=lambda target: marks.append((target.shape, time.perf_counter())),
            )

        result, seconds, peak = timed(place.device, run_decompose)
        # A matrix's time runs from the previous one's end: read, factorise, check, write the previous.
        per_shape: dict[tuple[int, int], list[float]] = {}
        for (_, before), (shape, ended) in itertools.pairwise(marks):
            per_shape.setdefault(shape, []).append(ended - before)
        for shape, times in sorted(per_shape.items()):
            row(f"svd {shape[0]}x{shape[1]} {drivers[0]} (in decompose, x{len(times)})", min(times), peak)
        cache_bytes = result.path.stat().st_size
        row(
            f"decompose {len(selected)} matrices",
            seconds,
            peak,
            f"cache {cache_bytes / MB:,.0f} MB, error {result.max_error:.1e}; model {weight_bytes / MB:,.0f} MB",
            f"cache {predicted.cache / MB:,.0f} MB",
        )
        by_shape = {target.shape: target for target in reversed(selected)}
        for driver in drivers[1:]:
            for shape, target in sorted(by_shape.items()):
                weight = loaded.stored_weight(target.name).to(place.device)
                factors, seconds, peak = timed(place.device, lambda w=weight, d=driver: factorize(w, d))
                error = reconstruction_error(weight, factors)
                row(f"svd {shape[0]}x{shape[1]} {driver}", seconds, peak, f"error {error:.1e}")
                del factors, weight
    print("\n".join(rows))


if __name__ == "__main__":
    main()
