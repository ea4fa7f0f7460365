"""Benchmark: how much of an SVF expert's gain a rank-k LoRA export keeps (`t2 export --format peft-lora`).

    T2_THREADS=2 python tests/bench/bench_export.py [--expert arc@2] [--registry registry] [--task arc:text]
        [--data DATA (default: $T2_TEST_DATA/arc_easy)] [--split test] [--n 300] [--mode generate] [--max-new-tokens 32]
        [--ranks 8,16,32,64,128,256] [--engine vllm|hf]

The base model, the exact expert and each rank-k export score the same held-out items. An export is
scored through its equivalent z (`lora_equivalent_z`: W + BA written as an SVF expert under the `none`
rule; tests/experts/test_export.py checks that its logits equal the PEFT folder's), so either engine
runs it at full speed. Columns: score ± SE; gain kept = (export − base) / (exact − base), with the
paired SE of (export − exact); agree = items whose completion (generate) or pick (likelihood) equals
the exact expert's; energy = share of ‖ΔW‖²_F kept; error = max over matrices of ‖ΔW − ΔW_k‖/‖W′‖.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from t2cli.config import configure_threads
from t2cli.engines import make_engine
from t2cli.engines.evaluate import EvalResult, evaluate
from t2cli.experts.export import expert_factors, lora_equivalent_z, lora_factors
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model
from t2cli.stats import mean_se, paired_scores
from t2cli.tasks.registry import resolve_task

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests.shared_data
from tests.shared_data import bench_data


def agreement(a: EvalResult, b: EvalResult) -> float:
    same = [x.completion == y.completion and x.pick == y.pick for x, y in zip(a.items, b.items, strict=True)]
    return sum(same) / len(same)


def rewards(result: EvalResult) -> list[float]:
    """Each item's score in [0, 1] (rewards are ±1), as `EvalResult.score` averages them."""
    return [(item.reward + 1) / 2 for item in result.items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--expert", default="arc@2")
    parser.add_argument("--registry", default="registry")
    parser.add_argument("--task", default="arc:text")
    parser.add_argument("--data", help="default: arc_easy of the developers' data folder ($T2_TEST_DATA)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--mode", default="generate")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--ranks", default="8,16,32,64,128,256")
    parser.add_argument("--engine", default="vllm")
    args = parser.parse_args()
    configure_threads(None)

    loaded = load_model(args.model)
    ref = Registry(Path(args.registry)).resolve(args.expert, loaded.slug)
    expert = ref.load(loaded.fingerprint)
    factors = expert_factors(loaded, expert)
    task = resolve_task(args.task)
    examples = task.load(args.data or str(bench_data("arc_easy")), args.split, args.n)
    engine = make_engine(args.engine, loaded, batch_size=64)

    def score(label: str) -> EvalResult:
        return evaluate(
            engine, task, examples, chat=loaded.chat, mode=args.mode, max_new_tokens=args.max_new_tokens, label=label
        )

    engine.set_expert(None)
    base = score("base")
    engine.set_expert(expert.z, expert.manifest.svf_rule)
    exact = score("exact")
    gain = paired_scores(rewards(exact), rewards(base))
    assert gain is not None

    def row(label: str, parameters: str, energy: str, error: str, result: EvalResult) -> str:
        own = mean_se(rewards(result))
        assert own is not None
        against_exact = paired_scores(rewards(result), rewards(exact))
        assert against_exact is not None
        kept = (result.score - base.score) / gain.difference.mean if gain.difference.mean else float("nan")
        return (
            f"| {label} | {parameters} | {energy} | {error} | {own.mean:.3f} ± {own.se or 0:.3f} "
            f"| {kept:.0%} | {against_exact.difference.mean:+.3f} ± {against_exact.difference.se or 0:.3f} "
            f"| {agreement(result, exact):.0%} |"
        )

    print(
        f"{args.expert} on {args.task} ({args.split}, {args.mode}), n = {base.n}, model {loaded.model_id}, "
        f"engine {engine.name}; exact − base = {gain.difference.mean:+.3f} ± {gain.difference.se or 0:.3f}"
    )
    print("| weights | parameters | energy kept | max error | score ± SE | gain kept | − exact | agree with exact |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(row("base", "—", "—", "—", base), flush=True)
    for rank in (int(r) for r in args.ranks.split(",")):
        lora = lora_factors(expert, factors, rank=rank)
        overall = lora.report.overall()
        engine.set_expert(lora_equivalent_z(expert, factors, rank=rank), "none")
        line = row(f"LoRA r={rank}", f"{lora.parameters:,}", f"{overall.energy:.1%}", f"{overall.max_error:.2e}",
                   score(f"r{rank}"))  # fmt: skip
        print(line, flush=True)
    z_numbers = sum(z.numel() for z in expert.z.values())
    print(row("exact (SVF)", f"{z_numbers:,} z", "100 %", "0", exact))


if __name__ == "__main__":
    main()
