"""Benchmark: generation throughput of the hf engine vs a naive per-prompt `generate` loop.

    python tests/bench/bench_eval.py [--prompts 32] [--new-tokens 32] [--threads 2] [--batches 1 8 32]

Both sides decode greedily the same chat prompts (GSM8K questions from the developers' data folder,
$T2_TEST_DATA, or synthetic ones when it is absent: tests/shared_data.py) to at most the same number of
new tokens on SmolLM2-135M. Rows: the naive loop (one `model.generate` per prompt) and the engine at
each batch size (length-sorted batches, left padding); tokens/s counts generated tokens. Sandbox
executions/s are measured by `tests/bench/bench_sandbox.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from t2cli.engines.base import Sampling, encode_prompt
from t2cli.engines.hf import HFEngine
from t2cli.models.loading import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests.shared_data
from tests.shared_data import bench_data


def questions(count: int) -> list[str]:
    data = bench_data("gsm8k", "test.jsonl", required=False)  # $T2_TEST_DATA, else synthetic questions
    if data is not None:
        lines = data.read_text().splitlines()[:count]
        return [json.loads(line)["question"] for line in lines]
    return [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have?" for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model("smollm2-135m")
    prompts = [[{"role": "user", "content": q}] for q in questions(args.prompts)]
    sampling = Sampling(max_new_tokens=args.new_tokens)

    started = time.perf_counter()
    naive_tokens = 0
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([encode_prompt(loaded.tokenizer, prompt)])
            out = loaded.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=loaded.tokenizer.pad_token_id,
            )
            naive_tokens += out.shape[1] - ids.shape[1]
    naive = time.perf_counter() - started

    table = Table(
        title=f"greedy generation, SmolLM2-135M, {args.prompts} prompts × {args.new_tokens} new tokens, "
        f"{args.threads} threads"
    )
    for column in ("method", "seconds", "tokens/s", "speed-up"):
        table.add_column(column, justify="right")
    table.add_row("naive per-prompt generate", f"{naive:.1f}", f"{naive_tokens / naive:.1f}", "1.00×")
    for batch in args.batches:
        engine = HFEngine(loaded, batch_size=batch)
        started = time.perf_counter()
        generations = engine.generate(prompts, sampling)
        seconds = time.perf_counter() - started
        tokens = sum(len(g.token_ids) for g in generations)
        table.add_row(
            f"hf engine, batch {batch}", f"{seconds:.1f}", f"{tokens / seconds:.1f}", f"{naive / seconds:.2f}×"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
