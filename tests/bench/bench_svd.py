"""Benchmark: decomposition and materialisation cost on SmolLM2-135M, side by side in one run.

    python tests/bench/bench_svd.py [--threads 1 2] [--repeats 3]

Columns, per thread count (medians of --repeats runs):
- raw svd: a plain `torch.linalg.svd` loop over the 210 target matrices (the baseline);
- decompose gram / gesdd: `t2cli.svd.decompose(force=True)` with each driver (includes the checks);
- cached: `decompose` again, served from the memory-mapped cache (fingerprint probe included);
- apply: `LiveAdapter.apply` of a random expert on every matrix (W + U diag(s(z-1)) Vh);
- gemm: the bare matmuls of the same shapes (U·diag) @ Vh, the floor for materialising;
- max rel err: worst ‖U diag(s) Vh − W‖ / ‖W‖ of the gram driver.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from t2cli.models.loading import LoadedModel, load_model
from t2cli.svd import decompose, load_cached, relative_error
from t2cli.svf import LiveAdapter


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(loaded: LoadedModel, cache: Path, repeats: int) -> list[str]:
    params = dict(loaded.model.named_parameters())
    weights = [params[t.name].detach() for t in loaded.targets]
    raw = median_seconds(lambda: [torch.linalg.svd(w, full_matrices=False) for w in weights], repeats)
    gram = median_seconds(lambda: decompose(loaded, force=True, driver="gram", cache_dir=cache), repeats)
    gesdd = median_seconds(lambda: decompose(loaded, force=True, driver="gesdd", cache_dir=cache), repeats)
    decomposition = decompose(loaded, force=True, driver="gram", cache_dir=cache)
    cached = median_seconds(lambda: load_cached(loaded, loaded.targets, decomposition.path), repeats)
    factors = decomposition.factors
    worst = max(relative_error(params[name], f) for name, f in factors.items())
    generator = torch.Generator().manual_seed(0)
    z = {name: 1 + 0.1 * torch.randn(f.S.shape, generator=generator) for name, f in factors.items()}
    adapter = LiveAdapter(loaded.model, factors)
    apply = median_seconds(lambda: adapter.apply(z), repeats)
    adapter.restore()
    scaled = {name: (f.U * f.S).contiguous() for name, f in factors.items()}
    gemm = median_seconds(lambda: [scaled[n] @ factors[n].Vh for n in factors], repeats)
    return [
        f"{raw:.2f}",
        f"{gram:.2f}",
        f"{gram / raw:.2f}×",
        f"{gesdd:.2f}",
        f"{cached:.3f}",
        f"{apply:.3f}",
        f"{gemm:.3f}",
        f"{apply / gemm:.2f}×",
        f"{worst:.1e}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    loaded = load_model("smollm2-135m")
    table = Table(title=f"SVD and SVF materialisation, SmolLM2-135M, {len(loaded.targets)} matrices (median seconds)")
    for column in (
        "threads",
        "raw svd",
        "decompose gram",
        "ratio",
        "decompose gesdd",
        "cached load",
        "apply",
        "gemm",
        "apply/gemm",
        "max rel err",
    ):
        table.add_column(column, justify="right")

    with tempfile.TemporaryDirectory() as cache_dir:
        for threads in args.threads:
            torch.set_num_threads(threads)
            table.add_row(str(threads), *measure(loaded, Path(cache_dir), args.repeats))
    Console().print(table)
    print(f"torch {torch.__version__}, cores {os.cpu_count()}")


if __name__ == "__main__":
    main()
