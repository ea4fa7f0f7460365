"""Benchmark: where a training step's time goes on SmolLM2-135M, and SVF's gradient pass vs full fine-tuning.

    python tests/bench/bench_train.py [--threads 2] [--steps 3] [--batch-size 8] [--samples 2] [--new-tokens 48]

Runs a few REINFORCE steps with free generation on GSM8K questions (the developers' data folder,
$T2_TEST_DATA, or synthetic questions when absent: tests/shared_data.py) and reports, per step (median):
seconds sampling, scoring and in the gradient pass, tokens, and the process's peak memory. Then, on the
same sampled sequences, it times one SVF gradient pass (loss through the adapted layers to z) against a plain full
fine-tuning backward of the same loss (all weights trainable), side by side.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from t2cli.engines.base import Sampling, encode_prompt, left_pad
from t2cli.models.loading import load_model
from t2cli.tasks.base import Example
from t2cli.tasks.registry import get_task
from t2cli.training.config import TrainConfig
from t2cli.training.logprobs import final_hidden, output_head, score_tokens
from t2cli.training.objectives import sequence_pass
from t2cli.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests.shared_data
from tests.shared_data import bench_data


def examples(count: int) -> list[Example]:
    task = get_task("gsm8k")
    data = bench_data("gsm8k", "train.jsonl", required=False)  # $T2_TEST_DATA, else synthetic questions
    if data is not None:
        return task.load(str(data), "train", count)
    return [Example(id=str(i), question=f"What is {i} plus {i + 2}?", reference=str(2 * i + 2)) for i in range(count)]


def full_finetune_backward(model: torch.nn.Module, rows: list[tuple[list[int], list[int]]], pad_id: int) -> float:
    """One backward of −Σ log π(y|x) with every weight trainable: the cost SVF avoids paying in memory."""
    ids, mask, positions = left_pad([p + c for p, c in rows], pad_id)
    keep = max(len(c) for _, c in rows) + 1
    completion_mask = torch.zeros((len(rows), keep - 1))
    for row, (_, tail) in enumerate(rows):
        completion_mask[row, -len(tail) :] = 1.0
    model.requires_grad_(True)
    started = time.perf_counter()
    hidden = final_hidden(model, ids, mask, positions, keep, "cpu")[:, :-1]
    (-score_tokens(output_head(model), hidden, ids[:, -keep + 1 :], completion_mask).logp.sum()).backward()
    seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    model.requires_grad_(False)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model("smollm2-135m")
    task = get_task("gsm8k")
    data = examples(args.batch_size * args.steps)
    config = TrainConfig(
        task="gsm8k",
        rollout="generate",
        steps=args.steps,
        batch_size=args.batch_size,
        samples=args.samples,
        max_new_tokens=args.new_tokens,
        micro_batch=args.batch_size * args.samples,
        val_every=10_000,
        kl=0.05,
    )
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(loaded, task, data, [], config, run_dir=Path(run_dir))
        result = trainer.run()
        log = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]

    table = Table(
        title=f"t2 train step, SmolLM2-135M, batch {args.batch_size} × {args.samples} samples, "
        f"≤{args.new_tokens} new tokens, {args.threads} threads (median of {args.steps} steps)"
    )
    for column in ("sampling s", "scoring s", "gradient s", "tokens", "peak MB"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{statistics.median(r['sample_s'] for r in log):.1f}",
        f"{statistics.median(r['score_s'] for r in log):.2f}",
        f"{statistics.median(r['grad_s'] for r in log):.1f}",
        f"{statistics.median(r['tokens'] for r in log):.0f}",
        f"{result.peak_memory_mb:.0f}",
    )
    Console().print(table)

    # The same sequences through both backward passes.
    prompts = [[{"role": "user", "content": e.question}] for e in data[: args.batch_size]]
    generations = trainer.engine.generate(prompts, Sampling(max_new_tokens=args.new_tokens, temperature=1.0, seed=0))
    rows = [
        (encode_prompt(loaded.tokenizer, p), list(g.token_ids) or [loaded.tokenizer.eos_token_id])
        for p, g in zip(prompts, generations, strict=True)
    ]
    # Without the KL term, so both sides compute the same loss.
    with tempfile.TemporaryDirectory() as run_dir:
        plain = Trainer(loaded, task, data, [], replace(config, kl=0.0), run_dir=Path(run_dir))
        started = time.perf_counter()
        sequence_pass(plain.context, rows, torch.ones(len(rows)), normaliser=len(rows))
        svf = time.perf_counter() - started
    full = full_finetune_backward(loaded.model, rows, trainer.pad_id)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    compare = Table(title=f"gradient pass on the same {len(rows)} sequences")
    for column in ("method", "seconds", "trainable parameters", "ratio"):
        compare.add_column(column, justify="right")
    compare.add_row("SVF (z only)", f"{svf:.1f}", f"{result.trainable_parameters:,}", f"{svf / full:.2f}×")
    compare.add_row(
        "full fine-tuning", f"{full:.1f}", f"{sum(p.numel() for p in loaded.model.parameters()):,}", "1.00×"
    )
    Console().print(compare)
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
