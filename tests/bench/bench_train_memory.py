"""Benchmark: peak memory and tokens/s of one training step, SVF (full spectrum, --rank 64) against PEFT LoRA.

    PYTHONPATH=. python tests/bench/bench_train_memory.py --model smollm2 --threads 2
    PYTHONPATH=. python tests/bench/bench_train_memory.py --model llama3-8b-layers --dtype bfloat16 --threads 2
    PYTHONPATH=. python tests/bench/bench_train_memory.py --device cuda ...      (a GPU: CUDA max allocated)

Each configuration runs in a fresh process (a process's peak resident set only grows), one after the
other, on the same random token batch: `--batch` sequences of `--seq` tokens whose last `--keep` are the
scored continuation, loss = −log π(continuation) + β·KL(π ‖ π_base) (β = 0.05, the nll recipes'), one
backward and an Adam step, as `t2 train --method nll` takes it (t2cli.training.objectives). Rows: SVF over
the whole spectrum, SVF --rank 64, LoRA r16 and r64 on the same targets (all seven roles). Columns: the
process's peak (VmHWM on the CPU, CUDA max allocated on a GPU), the peak before the step (model, factors,
adapter), the step's own increase, tests/bench/memory_plan.py's prediction for the SVF rows (tensors only:
compare it with CUDA's max allocated; the CPU's resident set adds the process and allocator), and
tokens/s (median of `--steps` steps after one warm-up). `svf-full-rebuilt` (not run by default) is the
full spectrum without a kept W′ (side_path.KeptWeights), as on a device without room for one.
`llama3-8b-layers` is a random Llama-3-8B-shaped model of `--layers` layers (tests/bench/bench_scale.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CONFIGS = {"svf-full": ("svf", None), "svf-r64": ("svf", 64), "lora-r16": ("lora", 16), "lora-r64": ("lora", 64),
           "svf-full-rebuilt": ("svf", None)}  # fmt: skip
KL = 0.05


def peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(args: argparse.Namespace) -> dict:
    import torch

    from t2cli.device import resolve_placement
    from t2cli.models.loading import load_model
    from t2cli.training.objectives import continuation_scores

    torch.set_num_threads(args.threads)
    place = resolve_placement(args.device, args.dtype)
    loaded = load_model(args.model_path, device=place.device, dtype=place.dtype)
    targets = loaded.select("all")
    adapter, rank = CONFIGS[args.worker]
    if adapter == "svf":
        from t2cli.training.policy import SVFPolicy

        policy = SVFPolicy.for_targets(loaded, targets, "none", rank, recompute=args.recompute)
        if args.worker == "svf-full-rebuilt":
            policy.kept = None  # what a device without room for a kept W′ runs: rebuilt twice a call
    else:
        from t2cli.training.lora_policy import LoRAPolicy

        policy = LoRAPolicy(loaded, targets, rank, recompute=args.recompute)
    optimizer = torch.optim.Adam(policy.parameters, lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    vocab = loaded.model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=generator)
    mask = torch.ones_like(ids)
    positions = torch.arange(args.seq).expand(args.batch, args.seq)
    completion = torch.ones(args.batch, args.keep - 1)
    before = peak_mb(place.device)
    if place.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(place.device)
    seconds = []
    for _ in range(args.steps + 1):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        scored = continuation_scores(policy, ids, mask, positions, args.keep, completion, kl=True)
        (-scored.logp.sum() / scored.logp.numel() + KL * scored.kl.sum() / scored.kl.numel()).backward()
        optimizer.step()
        if place.device.startswith("cuda"):
            torch.cuda.synchronize(place.device)
        seconds.append(time.perf_counter() - started)
    peak = peak_mb(place.device)
    step_s = statistics.median(seconds[1:])
    from tests.bench.memory_plan import LLAMA_3_8B, SMOLLM2_135M, plan

    shapes = SMOLLM2_135M if args.model_path == "smollm2-135m" else LLAMA_3_8B.with_layers(args.layers)
    predicted = plan(shapes, dtype=place.dtype, rank=rank, batch=args.batch, seq=args.seq, keep=args.keep - 1)
    return {
        "config": args.worker,
        "trainable": sum(p.numel() for p in policy.parameters),
        "peak_mb": round(peak, 1),
        "setup_mb": round(before, 1),
        "step_mb": round(peak - before if not place.device.startswith("cuda") else peak, 1),
        "tokens_per_s": round(args.batch * args.seq / step_s, 1),
        "step_s": round(step_s, 3),
        "plan_mb": round(predicted.step / 2**20) if adapter == "svf" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="smollm2 or llama3-8b-layers")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of the Llama-3-8B-shaped model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--keep", type=int, default=128, help="scored positions per sequence (+1)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="svf-full,svf-r64,lora-r16,lora-r64")
    parser.add_argument("--recompute", action="store_true", help="activation checkpointing (t2 train --recompute)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "T2_HOME": os.environ.get("T2_HOME", str(Path(scratch) / "home"))}
        model_path = "smollm2-135m"
        if args.model == "llama3-8b-layers":
            from tests.bench.bench_scale import write_checkpoint

            model_path = str(Path(scratch) / "model")
            write_checkpoint(Path(model_path), args.layers)
        rows = []
        for name in args.configs.split(","):
            command = [sys.executable, __file__, "--worker", name, "--model-path", model_path]
            for option in ("device", "dtype", "batch", "seq", "keep", "steps", "threads", "layers"):
                command += [f"--{option}", str(getattr(args, option))]
            command += ["--recompute"] if args.recompute else []
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{name} failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr)
    unit = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS"
    print(f"\n{args.model} ({args.layers} layers)" if args.model != "smollm2" else "\nsmollm2", end="")
    print(", layers recomputed" if args.recompute else "", end="")
    print(f", {args.dtype}, {args.device}, batch {args.batch} x {args.seq} tokens, {args.keep - 1} scored, "
          f"{args.threads} threads\n")  # fmt: skip
    print(f"| config | trainable | {unit} MB | before step MB | step adds MB | plan MB | tokens/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        plan_mb = f"{row['plan_mb']:,}" if row["plan_mb"] is not None else "-"
        print(f"| {row['config']} | {row['trainable']:,} | {row['peak_mb']:,.0f} | {row['setup_mb']:,.0f} | "
              f"{row['step_mb']:,.0f} | {plan_mb} | {row['tokens_per_s']:,.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
