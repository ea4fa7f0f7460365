"""Benchmark: what an expert swap costs an engine, the part of pass 2 that `--pass2 groups` adds to one pass.

    T2_HOME=... python tests/bench/bench_swap.py --registry PATH [--experts arc@2,math@2] [--engine vllm]
                                                 [--model smollm2-135m] [--threads 2] [--repeats 3]

One engine is started (not timed), then, in the order a fresh `t2 run --pass2 groups` meets them: `prepare`
(the first swap's reading of SVD factors and base weights, per matrix not held yet), the first expert's swap,
each further expert's swap, and the swap back to the base. Then the experts are swapped in again in turn,
--repeats times, for the median of a later swap (factors and base weights already read). Seconds, wall clock.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from t2cli.config import configure_threads
from t2cli.engines import make_engine
from t2cli.engines.base import Sampling
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model


def timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--experts", default="arc@2,math@2")
    parser.add_argument("--engine", default="vllm")
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    configure_threads(args.threads)
    loaded = load_model(args.model, weights=args.engine != "vllm")
    registry = Registry(Path(args.registry))
    specs = args.experts.split(",")
    z = {spec: registry.resolve(spec, loaded.slug).load(loaded.fingerprint).z for spec in specs}
    engine = make_engine(args.engine, loaded, batch_size=16)
    engine.generate(["Hello"], Sampling(max_new_tokens=2))  # the engine's own first-call costs, not a swap's

    rows: list[tuple[str, float]] = []
    if hasattr(engine, "_prepare"):  # engines that read factors on first use (vLLM's worker)
        rows.append((f"prepare ({len(z[specs[0]])} matrices)", timed(engine._prepare, z[specs[0]])))
    for position, spec in enumerate(specs):
        rows.append((f"swap to {spec} ({'first' if position == 0 else 'next'})", timed(engine.set_expert, z[spec])))
    fresh_run = sum(seconds for _, seconds in rows)  # what a fresh groups run pays: prepare + each expert once
    rows.append(("swap to the base", timed(engine.set_expert, None)))
    again = [timed(engine.set_expert, z[spec]) for _ in range(args.repeats) for spec in specs]
    rows.append((f"a later swap (median of {len(again)})", statistics.median(again)))
    engine.set_expert(None)

    table = Table(title=f"expert swaps, {loaded.model_id}, {args.engine} engine, {args.threads} threads")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for label, seconds in rows:
        table.add_row(label, f"{seconds:.2f}")
    table.add_row("a fresh groups run's swaps (prepare + each expert once)", f"{fresh_run:.2f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
