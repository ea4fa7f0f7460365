"""Benchmark: an expert transferred onto an updated checkpoint of the same shapes, by both mappings, and the
alignment check that should predict it.

    T2_THREADS=2 python tests/bench/bench_transfer.py --target SIBLING_FOLDER [--source smollm2-135m]
        [--expert arc@2] [--registry registry] [--task arc:text] [--data DATA (default: $T2_TEST_DATA/arc_easy)]
        [--split test] [--n 200] [--max-new-tokens 32] [--engine hf] [--also-check gemma3-270m]
        [--retrained NAME@V]

Held-out items, greedy generation scored as `t2 eval --mode generate` scores them (the answers `t2 run`
gives). Rows: the source model with and without the expert (the gain to keep), then the target's own
base and the expert transferred by `position` and by `aligned` (and, with --retrained, the same recipe
trained on the target from scratch: the ceiling a transfer is set against); each row's score ± SE, its
paired difference from its own base ± SE, and the share of the source's gain it keeps. Before that, the
check's verdict, pooled energy and per-role scores for the target and for each --also-check model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from t2cli.config import configure_threads
from t2cli.engines import make_engine
from t2cli.engines.evaluate import EvalResult, evaluate
from t2cli.experts.alignment import AlignmentReport
from t2cli.experts.files import Expert
from t2cli.experts.rebase import align_bank, transfer_bank
from t2cli.experts.registry import Registry
from t2cli.models.loading import LoadedModel, load_model
from t2cli.stats import mean_se, paired_scores
from t2cli.tasks.registry import resolve_task

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests.shared_data
from tests.shared_data import bench_data


def rewards(result: EvalResult) -> list[float]:
    return [(item.reward + 1) / 2 for item in result.items]


def check_row(model: str, found: AlignmentReport) -> str:
    energy = "—" if found.energy is None else f"{found.energy:.3f}"
    roles = ", ".join(f"{r.role} {r.cosine:.2f}/{'—' if r.energy is None else f'{r.energy:.2f}'}" for r in found.roles)
    return f"| {model} | {found.verdict} | {energy} | {roles} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="the same-shape checkpoint folder (the sibling)")
    parser.add_argument("--source", default="smollm2-135m")
    parser.add_argument("--expert", default="arc@2")
    parser.add_argument("--registry", default="registry")
    parser.add_argument("--task", default="arc:text")
    parser.add_argument("--data", help="default: arc_easy of the developers' data folder ($T2_TEST_DATA)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--engine", default="hf")
    parser.add_argument("--also-check", action="append", default=[], help="another model to check (repeatable)")
    parser.add_argument("--retrained", help="NAME@V in --registry: the expert's recipe trained on the target itself")
    args = parser.parse_args()
    configure_threads(None)

    source = load_model(args.source, weights=False)
    registry = Registry(Path(args.registry))
    expert = registry.resolve(args.expert, source.slug).load(source.fingerprint)
    key = expert.manifest.ref
    print("| model | verdict | energy held | per role: cosine top-16 / energy held |\n|---|---|---:|---|")
    target = load_model(args.target)
    retrained = registry.resolve(args.retrained, target.slug).load(target.fingerprint) if args.retrained else None
    aligned = align_bank({key: expert}, source, target, carry=True)
    print(check_row(target.model_id, aligned.reports[key]), flush=True)
    for model in args.also_check:
        other = load_model(model, weights=False)
        print(check_row(other.model_id, align_bank({key: expert}, source, other).reports[key]), flush=True)
    moved = {
        mapping: transfer_bank({key: expert}, target, aligned, mapping=mapping, force=True)[key].expert
        for mapping in ("position", "aligned")
    }
    changed = [
        float((moved["aligned"].z[name] - moved["position"].z[name]).abs().mean()) for name in moved["aligned"].z
    ]
    print(f"\nmean |z_aligned − z_position| over {len(changed)} matrices: {sum(changed) / len(changed):.2e}")

    task = resolve_task(args.task)
    examples = task.load(args.data or str(bench_data("arc_easy")), args.split, args.n)

    def score(loaded: LoadedModel, applied: Expert | None, label: str) -> EvalResult:
        engine = make_engine(args.engine, loaded, batch_size=64)
        if applied is not None:
            engine.set_expert(applied.z, applied.manifest.svf_rule)
        try:
            return evaluate(
                engine, task, examples, chat=loaded.chat, mode="generate", max_new_tokens=args.max_new_tokens,
                label=label,
            )  # fmt: skip
        finally:
            engine.set_expert(None)

    def row(label: str, result: EvalResult, base: EvalResult | None, gain: float | None) -> str:
        own = mean_se(rewards(result))
        assert own is not None
        if base is None:
            return f"| {label} | {own.mean:.3f} ± {own.se or 0:.3f} | — | — |"
        paired = paired_scores(rewards(result), rewards(base))
        assert paired is not None
        d = paired.difference
        kept = f"{d.mean / gain:.0%}" if gain else "—"
        return f"| {label} | {own.mean:.3f} ± {own.se or 0:.3f} | {d.mean:+.3f} ± {d.se or 0:.3f} | {kept} |"

    # Rows print as they finish, the target's first: on a shared machine a run cut short still tells most.
    print(f"\n{args.expert} on {args.task} ({args.split}, generate), n = {len(examples)}, engine {args.engine}")
    print("| weights | score ± SE | − its base (paired) | share of the source's gain |\n|---|---:|---:|---:|")
    target_base = score(target, None, "target base")
    print(row(f"{target.model_id} base", target_base, None, None), flush=True)
    results = {}
    for mapping, transferred in moved.items():
        label = f"{key} ({mapping})"
        results[label] = score(target, transferred, mapping)
        print(row(f"{target.model_id} + {label}", results[label], target_base, None), flush=True)
    if retrained is not None:
        label = f"{args.retrained} (retrained on it)"
        results[label] = score(target, retrained, "retrained")
        print(row(f"{target.model_id} + {label}", results[label], target_base, None), flush=True)
    target_model = target.model_id
    del target
    full_source = load_model(args.source)
    source_base = score(full_source, None, "source base")
    print(row(f"{source.model_id} base", source_base, None, None), flush=True)
    source_expert = score(full_source, expert, "source expert")
    gain = source_expert.score - source_base.score
    print(row(f"{source.model_id} + {key}", source_expert, source_base, gain))
    for label, result in results.items():
        print(row(f"{target_model} + {label}", result, target_base, gain), flush=True)


if __name__ == "__main__":
    main()
