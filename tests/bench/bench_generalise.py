"""Evidence: do the bank's experts generalise? Leave-one-source-out evaluation, base vs expert.

    python tests/bench/bench_generalise.py --out /tmp/generalise [--expert arc@2 --expert math@2]
        [--trained-on NAME@V=SOURCE,...] [--n 100] [--n-math 50] [--run-n 50] [--threads 2] [--no-run]

For each expert, the held-out test items of every source of its domain (`arc`: science, `math`: math),
each marked as in the expert's training mix or left out of it entirely, scored greedily as `t2 eval`
and `t2 run` answer (`arc:text` prompt and 32 new tokens for science, the `math` prompt and 256 for
math): base and expert on the same first N items of each source, with the paired difference and its
SE. Then `t2 run --compare none` (its defaults: the classifier routes each request) on one shuffled
batch of the sources every expert left out, as a user would send them. All data is built by t2 from
packaged copies (t2:science-mix/, t2:math-mix/, t2:math-sources/: t2cli/tasks/science_mix.py,
math_mix.py, math_sources.py); the science mix needs ARC-Easy train once, from the Hub or with
`python -m t2cli.tasks.science_mix --arc-easy-train PATH`.

Which sources an expert trained on: --trained-on NAME@V=SOURCE,SOURCE (source families: arc_easy,
arc_challenge, openbookqa, sciq, svamp, asdiv, math_level1, gsm8k, mawps, math500); the bundled experts'
are known (TRAINED_ON).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from t2cli.engines import make_engine
from t2cli.engines.evaluate import EvalResult, evaluate_experts, prompt_for
from t2cli.engines.slot import ExpertSlot
from t2cli.experts.bundled import open_registry
from t2cli.experts.files import write_manifest
from t2cli.fsutil import write_jsonl
from t2cli.models.loading import load_model
from t2cli.stats import paired_scores
from t2cli.tasks.base import Example
from t2cli.tasks.registry import resolve_task


@dataclass(frozen=True)
class Source:
    name: str
    family: str  # what --trained-on names
    domain: str  # the expert task it belongs to: arc or math
    spec: str  # the task (and prompt style) it is scored with
    data: str
    level: str | None = None  # keep only rows of this `level` (the math mix's held-out file holds three sources)


SOURCES = (
    Source("ARC-Easy test", "arc_easy", "arc", "arc:text", "t2:science-mix/arc_easy_test.jsonl"),
    Source("ARC-Challenge test", "arc_challenge", "arc", "arc:text", "t2:science-mix/arc_challenge_test.jsonl"),
    Source("OpenBookQA test", "openbookqa", "arc", "arc:text", "t2:science-mix/openbookqa_test.jsonl"),
    Source("SciQ held out (validation)", "sciq", "arc", "arc:text", "t2:science-mix/sciq_heldout.jsonl"),
    Source("SVAMP held out", "svamp", "math", "math", "t2:math-mix/math_heldout.jsonl", "svamp"),
    Source("ASDiv held out", "asdiv", "math", "math", "t2:math-mix/math_heldout.jsonl", "asdiv"),
    Source("MATH test, level 1", "math_level1", "math", "math", "t2:math-mix/math_heldout.jsonl", "Level 1"),
    Source("GSM8K test", "gsm8k", "math", "math", "t2:math-sources/gsm8k_test.jsonl"),
    Source("MAWPS single-op", "mawps", "math", "math", "t2:math-sources/mawps_singleop.jsonl"),
    Source("MATH-500", "math500", "math", "math", "t2:math-sources/math500.jsonl"),
)
# What the bundled experts trained on (their manifests' provenance: ARC-Easy train; the math mix).
TRAINED_ON = {"arc@2": {"arc_easy"}, "math@2": {"svamp", "asdiv", "math_level1", "gsm8k"}}
NEW_TOKENS = {"arc": 32, "math": 256}


def labelled(source: Source, n: int) -> list[tuple[dict, Example]]:
    """The first `n` test items of the source: each record's own fields and the task's example."""
    task = resolve_task(source.spec)
    pairs = [(record.data, task.to_example(record)) for record in task.records(source.data, "test")]
    if source.level is not None:
        pairs = [(data, example) for data, example in pairs if example.meta.get("level") == source.level]
    return pairs[:n]


def trained_on(values: list[str]) -> dict[str, set[str]]:
    known = dict(TRAINED_ON)
    for value in values:
        spec, _, families = value.partition("=")
        known[spec] = {family.strip() for family in families.split(",") if family.strip()}
    return known


def score(result: EvalResult) -> list[float]:
    return [(item.reward + 1) / 2 for item in result.items]


def evaluate_all(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """One row per expert and source (base vs expert; a domain's later experts also vs its first), and
    every item's score."""
    loaded = load_model(args.model)
    registry = open_registry(args.registry)
    slot = ExpertSlot(make_engine("hf", loaded, batch_size=args.batch_size), registry, loaded)
    mixes = trained_on(args.trained_on)
    scores: dict[tuple[str, str], list[float]] = {}  # (expert or "base", source) -> per-item scores
    first: dict[str, str] = {}  # domain -> its first expert
    rows, items = [], []
    for spec in args.expert:
        domain = registry.resolve(spec, loaded.slug).manifest().task
        first.setdefault(domain, spec)
        for source in (s for s in SOURCES if s.domain == domain):
            examples = [example for _, example in labelled(source, args.n if domain == "arc" else args.n_math)]
            lineup = [spec] if ("base", source.name) in scores else [None, spec]
            results = evaluate_experts(
                slot, resolve_task(source.spec), examples, lineup, max_new_tokens=NEW_TOKENS[domain]
            )
            for result in results:
                scores[result.label, source.name] = score(result)
                items += [{"expert": result.label, "source": source.name, "id": item.id, "score": value}
                          for item, value in zip(result.items, score(result), strict=True)]  # fmt: skip
            row = {"expert": spec, "source": source.name, "family": source.family}
            row["in_mix"] = source.family in mixes.get(spec, set())
            row |= paired_scores(scores[spec, source.name], scores["base", source.name]).to_dict()
            if first[domain] != spec:
                versus = paired_scores(scores[spec, source.name], scores[first[domain], source.name])
                row["versus"] = {"expert": first[domain], **versus.difference.to_dict()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows, items


def write_metrics(args: argparse.Namespace, rows: list[dict]) -> None:
    """Each --write-metrics expert's rows into its manifest's metrics (re-signed): generalise_FAMILY_n,
    _base, _score, _diff and _se, FAMILY's source left out of its training or not."""
    registry = open_registry(args.registry)
    for spec in args.write_metrics:
        ref = registry.resolve(spec, args.model_slug)
        manifest = ref.manifest()
        metrics = dict(manifest.metrics)
        for row in (row for row in rows if row["expert"] == spec):
            key, diff = f"generalise_{row['family']}", row["difference"]
            metrics |= {
                f"{key}_n": diff["n"],
                f"{key}_base": row["base"]["mean"],
                f"{key}_score": row["adapted"]["mean"],
            }
            metrics |= {f"{key}_diff": diff["mean"], f"{key}_se": diff["se"] or 0.0}
        write_manifest(ref.path, replace(manifest, metrics=metrics))
        print(f"metrics written to {ref.spec}'s manifest", flush=True)


def table(rows: list[dict]) -> str:
    out = [
        "| expert | source | trained on it? | n | base | expert | paired difference | vs the domain's first expert |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base, adapted, diff = row["base"], row["adapted"], row["difference"]
        versus = row.get("versus")
        against = f"{versus['mean']:+.3f} ± {versus['se'] or 0:.3f} ({versus['expert']})" if versus else ""
        out.append(
            f"| {row['expert']} | {row['source']} | {'in its mix' if row['in_mix'] else '**left out**'} | {diff['n']} "
            f"| {base['mean']:.3f} | {adapted['mean']:.3f} | {diff['mean']:+.3f} ± {diff['se'] or 0:.3f} | {against} |"
        )
    return "\n".join(out)


def run_lines(args: argparse.Namespace) -> list[dict]:
    """`t2 run` input: the first --run-n items of each source no expert trained on, each as its task's
    prompt with the reference fields `t2 run` scores; the id starts with the source's family."""
    mixes = trained_on(args.trained_on)
    seen = set().union(*(mixes.get(spec, set()) for spec in args.expert))
    lines = []
    for source in (s for s in SOURCES if s.family not in seen):
        task = resolve_task(source.spec)
        for data, example in labelled(source, args.run_n):
            lines.append(
                {**data, "id": f"{source.family}/{example.id}", "task": task.name,
                 "messages": prompt_for(task, example, chat=True)}
            )  # fmt: skip
    random.Random(0).shuffle(lines)  # a mixed batch, as a user's would be
    return lines


def run_table(rows: list[dict]) -> str:
    """Adapted vs base per left-out source and overall, and where pass 1 sent each source's requests."""
    out = ["| source | n | base | adapted | paired difference | routed to |", "|---|---:|---:|---:|---:|---|"]
    families = sorted({row["id"].split("/", 1)[0] for row in rows})
    for family in [*families, "all"]:
        group = [row for row in rows if family == "all" or row["id"].startswith(f"{family}/")]
        paired = paired_scores([row["score"] for row in group], [row["base_score"] for row in group])
        if paired is None:
            continue
        routed = {}
        for row in group:
            routed[row.get("expert") or "base"] = routed.get(row.get("expert") or "base", 0) + 1
        where = ", ".join(f"{expert} {count}" for expert, count in routed.items()) if family != "all" else ""
        diff = paired.difference
        out.append(
            f"| {family} | {diff.n} | {paired.base.mean:.3f} | {paired.adapted.mean:.3f} "
            f"| {diff.mean:+.3f} ± {diff.se or 0:.3f} | {where} |"
        )
    return "\n".join(out)


def run_batch(args: argparse.Namespace) -> str:
    requests, answers = args.out / "run_requests.jsonl", args.out / "run_answers.jsonl"
    write_jsonl(requests, run_lines(args))
    command = [
        sys.executable, "-m", "t2cli", "--threads", str(args.threads), "run", str(requests), "--compare", "none",
        "--engine", "hf", "--batch-size", str(args.batch_size), "-o", str(answers), "--json",
    ]  # fmt: skip
    print("$", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return run_table([json.loads(line) for line in answers.read_text().splitlines()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--expert", action="append", help="an expert NAME@V (repeat; default arc@2 and math@2)")
    parser.add_argument("--trained-on", action="append", default=[], help="NAME@V=FAMILY,FAMILY")
    parser.add_argument("--n", type=int, default=100, help="items per science source")
    parser.add_argument("--n-math", type=int, default=50, help="items per math source")
    parser.add_argument("--run-n", type=int, default=50, help="items per left-out source in the t2 run batch")
    parser.add_argument("--no-run", action="store_true", help="skip the t2 run batch")
    parser.add_argument("--write-metrics", action="append", default=[], help="NAME@V: store its rows in its manifest")
    parser.add_argument("--model-slug", default="smollm2-135m", help="the model the --write-metrics experts adapt")
    parser.add_argument("--model", default=None)
    parser.add_argument("--registry", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    args.expert = args.expert or ["arc@2", "math@2"]
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    rows, items = evaluate_all(args)
    write_jsonl(args.out / "generalise.jsonl", rows)
    write_jsonl(args.out / "items.jsonl", items)
    print(table(rows), flush=True)
    write_metrics(args, rows)
    if not args.no_run:
        print(run_batch(args))


if __name__ == "__main__":
    main()
