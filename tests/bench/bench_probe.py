"""Benchmark: which layer L and how many request tokens N a probe router (`--adapt probe`) should read.

    T2_HOME=... python tests/bench/bench_probe.py --out DIR [--layers 2,4,...] [--tokens 16,32,64] [--threads 2]

The probe is fitted exactly as `t2 train --task cls --experts arc,math,mbpp --method probe` fits it (the cls
task's 500 training requests per category, its validation requests choosing penalty, temperature and
threshold), on every layer at once: one full forward per N gives each layer's mean state. It is scored on
150 held-out bare requests (30 ARC-Easy test, 30 GSM8K test and 30 MATH test counted as `math`, 30 MBPP
test, 30 `other` test; written to DIR/heldout.jsonl for `t2 dispatch`), with the pass-1 seconds of each
layer's early exit over those 150 requests (median of --repeats). The math training data is
`t2:math-mix/math_train.jsonl` (built under T2_HOME), the MATH held-out problems the `Level` rows of
`math_heldout150.jsonl`; ARC, GSM8K and MBPP come from the developers' data folder (tests/shared_data.py).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from t2cli.adapt.probe import accuracy, decide, fit_probe
from t2cli.config import configure_threads
from t2cli.engines.early_exit import pooled_states, truncated_view
from t2cli.models.loading import load_model
from t2cli.tasks.classification import OTHER, BareRequest, request_lines, routing_requests
from t2cli.tasks.math_mix import resolve_built
from t2cli.tasks.registry import get_task
from tests.shared_data import bench_data


class AllLayers(torch.nn.Module):
    """A decoder stand-in whose output is every layer's state side by side (pooled_states pools each)."""

    def __init__(self, model: torch.nn.Module, layers: int) -> None:
        super().__init__()
        self.model, self.layers = model, layers
        self.config = SimpleNamespace(hidden_size=model.config.hidden_size * layers)

    def forward(self, **inputs: torch.Tensor) -> SimpleNamespace:
        states = self.model(**inputs, output_hidden_states=True).hidden_states[1 : self.layers + 1]
        return SimpleNamespace(last_hidden_state=torch.cat(states, dim=-1))


def sources() -> dict[str, str]:
    return {
        "arc": str(bench_data("arc_easy")),
        "gsm8k": str(bench_data("gsm8k", "test.jsonl")),
        "mbpp": str(bench_data("mbpp", "mbpp.jsonl")),
        "math": str(resolve_built("t2:math-mix/math_train.jsonl")),
    }


def heldout_requests(data: dict[str, str]) -> list[dict[str, str]]:
    """The 150 held-out bare requests, GSM8K and MATH both labelled `math`."""
    tasks = [get_task("arc", shuffle_seed=0), get_task("gsm8k"), get_task("mbpp")]
    lines = request_lines(
        routing_requests(tasks, {k: data[k] for k in ("arc", "gsm8k", "mbpp")}, "test", 0, per_category=30)
    )
    math = get_task("math")
    problems = math.load(resolve_built("t2:math-mix/math_heldout150.jsonl"), "test")
    competition = [e for e in problems if e.meta["level"].startswith("Level")]
    rng = random.Random("heldout:math")
    picked = rng.sample(competition, 30)
    lines += request_lines([BareRequest(f"math/{e.id}", "math", math.raw_request(e)).phrased(rng) for e in picked])
    for line in lines:
        line["task"] = "math" if line["task"] == "gsm8k" else line["task"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", default="1,2,3,4,6,8,10,12,16,20,24,29")
    parser.add_argument("--tokens", default="16,32,64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    layers = [int(x) for x in args.layers.split(",")]
    data = sources()
    loaded = load_model(None)
    cls = get_task(
        "cls", tasks=[get_task("arc", shuffle_seed=0), get_task("math"), get_task("mbpp")],
        sources={k: data[k] for k in ("arc", "math", "mbpp")}, seed=0,
    )  # fmt: skip
    names = [name for name, _ in cls.categories]
    train, validation = cls.load(None, "train"), cls.load(None, "validation")
    held = heldout_requests(data)
    (args.out / "heldout.jsonl").write_text("".join(json.dumps(line) + "\n" for line in held))
    texts = {
        "train": [e.meta["request"] for e in train],
        "validation": [e.meta["request"] for e in validation],
        "heldout": [line["prompt"] for line in held],
    }
    labels = {
        "train": [names.index(e.reference) for e in train],
        "validation": [names.index(e.reference) for e in validation],
        "heldout": [names.index(line["task"]) for line in held],
    }
    print(f"train {len(train)}, validation {len(validation)}, held out {len(held)}", flush=True)
    width, deepest = loaded.model.config.hidden_size, max(layers)
    stand_in = AllLayers(loaded.model, deepest)
    fallback = names.index(OTHER)
    rows = []
    for tokens in (int(x) for x in args.tokens.split(",")):
        started = time.perf_counter()
        states = {split: pooled_states(stand_in, loaded.tokenizer, t, tokens) for split, t in texts.items()}
        print(f"N={tokens}: states of every layer in {time.perf_counter() - started:.0f} s", flush=True)
        for layer in layers:
            part = slice((layer - 1) * width, layer * width)
            fit = fit_probe(
                states["train"][:, part], labels["train"], states["validation"][:, part], labels["validation"],
                len(names), fallback,
            )  # fmt: skip
            chosen = decide(fit.head.probabilities(states["heldout"][:, part]), fit.threshold, fallback)
            right = [int(c == y) for c, y in zip(chosen, labels["heldout"], strict=True)]
            by_category = {
                name: sum(r for r, y in zip(right, labels["heldout"], strict=True) if y == i)
                for i, name in enumerate(names)
            }
            view = truncated_view(loaded.model, layer)
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                pooled_states(view, loaded.tokenizer, texts["heldout"], tokens)
                seconds.append(time.perf_counter() - started)
            mean = statistics.mean(right)
            row = {
                "tokens": tokens, "layer": layer, "val": round(fit.validation_accuracy, 3), "threshold": fit.threshold,
                "heldout": round(accuracy(chosen, labels["heldout"]), 3),
                "se": round((mean * (1 - mean) / len(right)) ** 0.5, 3), **by_category,
                "pass1_s": round(statistics.median(seconds), 2), "decisions": [names[c] for c in chosen],
            }  # fmt: skip
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "decisions"}), flush=True)
    (args.out / "probe_layers.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
