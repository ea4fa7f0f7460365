"""Evidence: base vs each Transformer² strategy on held-out items of the bank's tasks and an unseen one.

    python tests/bench/bench_strategies.py [--data DIR] [--registry PATH] [--n 24] [--n-arc 100]
                                           [--shots 10] [--max-new-tokens 256] [--threads 2] [--engine hf]

Per task, every item is scored once under the base weights and under each bank expert (greedy
generation scored by the task, or for ARC the cloze log-likelihood pick, the form the arc expert
was trained in). A routing strategy's score is then exact: each item counts with the expert its
pass 1 chose (`other` = base). `prompt` and `classifier` route every item on its own; `few-shot`
searches α over the bank (CEM on --shots labelled items of the task's train split, scored by the
reference answers' log-likelihood) and answers all items with that mixture. Items are the first N
of each test split; shots never overlap them. Routing accuracy counts a bank task's item as
correct when routed to its own task; HumanEval (no expert) shows where its items went.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from t2cli.adapt.bank import find_classifier, load_bank
from t2cli.adapt.cem import CemConfig
from t2cli.adapt.fewshot import SearchConfig, make_recipe, search_alpha
from t2cli.adapt.routers import ClassifierRouter, LabelRouter
from t2cli.engines import make_engine
from t2cli.engines.evaluate import evaluate, prompt_for
from t2cli.engines.slot import ExpertSlot
from t2cli.errors import NotFoundError
from t2cli.experts.bundled import open_registry
from t2cli.experts.compose import compose_vectors
from t2cli.experts.recipes import alpha_summary
from t2cli.models.loading import load_model
from t2cli.tasks.registry import resolve_task

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests.shared_data
from tests.shared_data import bench_data


@dataclass(frozen=True)
class Bench:
    name: str  # the task's name in the bank (the routing label its items should get)
    spec: str
    data: str
    mode: str
    limit: int
    shots_split: str


def benches(data: Path, n: int, n_arc: int) -> list[Bench]:
    return [
        Bench("arc", "arc:cloze", str(data / "arc_easy"), "likelihood", n_arc, "train"),
        Bench("gsm8k", "gsm8k", str(data / "gsm8k" / "test.jsonl"), "generate", n, "train"),
        Bench("mbpp", "mbpp", str(data / "mbpp" / "mbpp.jsonl"), "generate", n, "train"),
        Bench("humaneval", "humaneval", str(data / "humaneval" / "HumanEval.jsonl"), "generate", n, "test"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="the developers' data folder (default: $T2_TEST_DATA)")
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--n", type=int, default=24, help="items of each generated task")
    parser.add_argument("--n-arc", type=int, default=100)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("T2_THREADS", "2")))
    parser.add_argument("--engine", default="hf")
    args = parser.parse_args()
    args.data = args.data or bench_data()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    loaded = load_model()
    registry = open_registry(args.registry)
    bank = load_bank(registry, loaded.slug)
    slot = ExpertSlot(make_engine(args.engine, loaded, batch_size=16), registry, loaded)
    routers = {"prompt": LabelRouter(slot, loaded, bank)}
    try:
        routers["classifier"] = ClassifierRouter(slot, loaded, bank, find_classifier(registry, loaded.slug))
    except NotFoundError as missing:
        Console().print(f"no classifier row: {missing}")
    bank_experts = [e.ref.load(loaded.fingerprint) for e in bank.experts]
    specs = [e.ref.spec for e in bank.experts]
    search = SearchConfig(score="likelihood", cem=CemConfig(population=6, elites=2, iterations=3, seed=0))

    scores: dict[str, dict[str, float]] = {}
    routing: dict[str, dict[str, dict[str, int]]] = {name: {} for name in routers}
    alphas: dict[str, str] = {}
    for bench in benches(args.data, args.n, args.n_arc):
        task = resolve_task(bench.spec)
        items = task.load(bench.data, "test", bench.limit)
        pool = task.load(bench.data, bench.shots_split)
        shots = [e for e in pool if e.id not in {i.id for i in items}][-args.shots :]

        def run(label: str, task=task, items=items, bench=bench) -> list[float]:
            result = evaluate(
                slot.engine, task, items, chat=loaded.chat, mode=bench.mode, max_new_tokens=args.max_new_tokens
            )
            print(f"  {bench.name:<10} {label:<12} {result.score:.3f}  ({time.perf_counter() - started:.0f} s)")
            return [item.reward for item in result.items]

        per_expert: dict[str | None, list[float]] = {}
        for spec in [None, *specs]:
            slot.hold(spec)
            per_expert[spec] = run(spec or "base")
        row = {"base": statistics.mean(per_expert[None])} | {s: statistics.mean(per_expert[s]) for s in specs}
        prompts = [prompt_for(task, e, loaded.chat) for e in items]
        for name, router in routers.items():
            decisions = router.decide(prompts)
            row[name] = statistics.mean(per_expert[d.expert][i] for i, d in enumerate(decisions))
            counts: dict[str, int] = {}
            for decision in decisions:
                counts[decision.label] = counts.get(decision.label, 0) + 1
            routing[name][bench.name] = counts
        result = search_alpha(slot, loaded.chat, bank_experts, [(task, shot) for shot in shots], search)
        recipe = make_recipe(bank_experts, result.best)
        first = bank_experts[0].manifest
        slot.apply(
            compose_vectors([e.z for e in bank_experts], [e.alpha for e in recipe.experts], first.targets),
            first.svf_rule,
        )
        row["few-shot"] = statistics.mean(run("few-shot"))
        alphas[bench.name] = " ".join(f"{name}={value:.2f}" for name, value in alpha_summary(recipe).items())
        slot.hold(None)
        scores[bench.name] = row

    # Items score in [-1, 1] (task rewards); the table shows accuracy, the share scoring > 0.
    columns = ["base", *specs, *routers, "few-shot"]
    table = Table(
        title=f"accuracy on held-out items, {loaded.model_id}, {slot.engine.name} engine, {args.threads} threads"
    )
    table.add_column("task")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in scores.items():
        table.add_row(name, *(f"{(row[c] + 1) / 2:.3f}" for c in columns))
    console = Console()
    console.print(table)
    console.print("few-shot α: " + "; ".join(f"{task}: {text}" for task, text in alphas.items()))
    for name, per_task in routing.items():
        bank_tasks = [t for t in per_task if t in {e.task for e in bank.experts}]
        right = sum(per_task[t].get(t, 0) for t in bank_tasks)
        total = sum(sum(per_task[t].values()) for t in bank_tasks)
        console.print(
            f"{name} routing accuracy on the bank's tasks: {right}/{total} = {right / total:.3f}; "
            + "; ".join(f"{t} → {dict(sorted(c.items()))}" for t, c in per_task.items())
        )
    console.print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
