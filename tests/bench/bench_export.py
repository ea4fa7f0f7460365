"""Benchmark: how much of an SVF expert's gain a rank-k LoRA export keeps (`t2 export --format peft-lora`).

    T2_THREADS=1 python tests/bench/bench_export.py [--expert arc@1] [--registry registry] [--task arc:cloze]
        [--data /work/shared/data/arc_easy] [--split test] [--n 200] [--mode likelihood] [--ranks 8,16,32,64,128,256]

The base model, the exact expert (W' swapped in) and the exported PEFT folder at each rank (loaded with
`PeftModel.from_pretrained`, as any PEFT user would) score the same held-out items. Columns: score ± its
binomial standard error; gain kept = (export − base) / (exact − base); agree = share of items whose pick
equals the exact expert's; energy = share of ‖ΔW‖²_F kept; error = max over matrices of ‖ΔW − ΔW_k‖/‖W′‖.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from t2cli.config import configure_threads
from t2cli.engines.evaluate import EvalResult, evaluate
from t2cli.engines.hf import HFEngine
from t2cli.experts.export import expert_factors, export_peft, load_export
from t2cli.experts.registry import Registry
from t2cli.models import load_model
from t2cli.tasks.registry import resolve_task


def se(score: float, n: int) -> float:
    return math.sqrt(score * (1 - score) / n)


def agreement(a: EvalResult, b: EvalResult) -> float:
    return sum(x.pick == y.pick for x, y in zip(a.items, b.items, strict=True)) / len(a.items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--expert", default="arc@1")
    parser.add_argument("--registry", default="registry")
    parser.add_argument("--task", default="arc:cloze")
    parser.add_argument("--data", default="/work/shared/data/arc_easy")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--mode", default="likelihood")
    parser.add_argument("--ranks", default="8,16,32,64,128,256")
    args = parser.parse_args()
    configure_threads(None)

    loaded = load_model(args.model)
    ref = Registry(Path(args.registry)).resolve(args.expert, loaded.slug)
    expert = ref.load(loaded.fingerprint)
    factors = expert_factors(loaded, expert)
    task = resolve_task(args.task)
    examples = task.load(args.data, args.split, args.n)

    def score(model_loaded, label: str) -> EvalResult:
        engine = HFEngine(model_loaded)
        return evaluate(engine, task, examples, chat=loaded.chat, mode=args.mode, label=label)

    base = score(loaded, "base")
    engine = HFEngine(loaded)
    engine.set_expert(expert.z, expert.manifest.svf_rule)
    exact = evaluate(engine, task, examples, chat=loaded.chat, mode=args.mode, label="exact")
    engine.set_expert(None)
    gain = exact.score - base.score
    n = base.n
    print(f"{args.expert} on {args.task} ({args.split}, {args.mode}), n = {n}, model {loaded.model_id}")
    print("| weights | parameters | energy kept | max error | score ± SE | gain kept | agree with exact |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| base | — | — | — | {base.score:.3f} ± {se(base.score, n):.3f} | 0 % | {agreement(base, exact):.1%} |")
    for rank in (int(r) for r in args.ranks.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            result = export_peft(loaded, expert, factors, Path(tmp) / "lora", rank=rank)
            exported = score(load_export(loaded, Path(tmp) / "lora", "peft-lora"), f"r{rank}")
        overall = result.report.overall()
        kept = (exported.score - base.score) / gain if gain else float("nan")
        print(
            f"| LoRA r={rank} | {result.parameters:,} | {overall.energy:.4%} | {overall.max_error:.2e} "
            f"| {exported.score:.3f} ± {se(exported.score, n):.3f} | {kept:.1%} | {agreement(exported, exact):.1%} |",
            flush=True,
        )
    print(f"| exact (SVF) | {sum(z.numel() for z in expert.z.values()):,} z | 100 % | 0 "
          f"| {exact.score:.3f} ± {se(exact.score, n):.3f} | 100 % | 100 % |")  # fmt: skip


if __name__ == "__main__":
    main()
