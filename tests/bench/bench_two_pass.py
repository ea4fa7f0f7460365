"""Benchmark: what Transformer²'s two passes cost — `t2 run --adapt prompt` against `--adapt none`.

    python tests/bench/bench_two_pass.py [--model smollm2-135m] [--registry PATH] [--n 64] [--prompts FILE]
                                         [--max-new-tokens 64] [--threads 2] [--repeats 1] [--engine hf]
                                         [--vllm-block-size N] [--batch-size 16] [--rows] [--strategies S,...]

Both runs answer the same N prompts (the first N lines of --prompts, by default examples/prompts.jsonl
repeated) through the `t2 run` command line, alternating, --repeats times each. Without --registry a
temporary one gets synthetic experts (gsm8k, mbpp, arc; z = 1 + small noise on the --targets matrices)
for the model. Columns (medians):
- wall: the whole command, model loading included; run: the two passes alone (t2's own timer);
- pass 1 / pass 2: routing (one labelled prefill) and the grouped generation;
- groups, swaps: expert groups and weight swaps in pass 2; chars: mean completion length, since
  another expert can answer longer or shorter and that, not routing, moves pass 2;
- steps: pass 2's decode steps as a continuous batcher of --batch-size running requests would take
  them (vLLM's scheduler, modelled: each group alone, first come first served, on the completions'
  token counts): a group lasts at least as long as its longest answer, whatever its size.
The ratio is prompt/none (and classifier/none with --registry, probe/none with --probe) over `run`; the
targets are <= 1.25x at 64 new tokens and <= 1.10x at 256. --vllm-block-size starts vLLM with another KV
block size than t2's.
`--pass1-prefix` times only pass 1's labelled prefill, whole routing prompts against their shared head
computed once.

With --lora-ranks R,… each rank adds a `STRATEGY lora:R` run: pass 2 in mixed-expert batches of rank-R
LoRA exports (`t2 run --lora-rank R`, no swaps), and the column `agree` gives the share of its completions
identical to the exact run's (greedy), so speed and fidelity of both pass-2 paths sit side by side.
With --rows each routed strategy also runs with `--pass2 rows` (every expert in one batch, each row with
its expert's exact weights, `STRATEGY rows`) beside t2 run's default (`groups`: a swap per expert group);
`agree` then gives the share of its completions identical to the default run's.
`--strategies` names the routed strategies to time (default: prompt, and classifier with --registry, probe
with --probe).
With --one-expert NAME every prompt is also answered by that one expert (`--adapt NAME`: one group, one
swap), and each routed run's pass 2 is set against it: what mixing experts in pass 2 costs. On a real
bank (--registry) the LoRA runs route with the classifier, t2 run's default; else with `prompt`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from t2cli.experts.files import Expert
from t2cli.experts.manifest import new_manifest
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model

EXAMPLES = Path(__file__).parents[2] / "examples" / "prompts.jsonl"
TARGET_RATIOS = {64: 1.25, 256: 1.10}  # two passes against one, by new tokens (issue #18)
MIXED_TARGET_RATIO = 1.15  # pass 2 with several experts in one batch against all prompts on one expert


def write_prompts(path: Path, count: int, source: Path = EXAMPLES) -> None:
    """The first `count` lines of `source`, going round again when it has fewer (ids made unique).
    Repeated lines share their whole prompt, which vLLM's prefix cache then skips: distinct prompts
    (e.g. bench_payoff.py's requests.jsonl) time what users see."""
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    if len(rows) < count:
        print(f"{source} has {len(rows)} lines: {count - len(rows)} of the {count} prompts repeat one", file=sys.stderr)
    with path.open("w") as handle:
        for index, row in zip(range(count), itertools.cycle(rows)):
            handle.write(json.dumps({**row, "id": f"{row['id']}-{index}"}) + "\n")


def synthetic_registry(root: Path, model: str, targets: str) -> None:
    """Experts of the model for three tasks, so routing has somewhere to send prompts."""
    loaded = load_model(model)
    registry = Registry(root)
    generator = torch.Generator().manual_seed(0)
    for task in ("gsm8k", "mbpp", "arc"):
        selected = loaded.select(targets)
        manifest = new_manifest(
            name=f"{task}-synthetic",
            base_model=loaded.model_id,
            base_fingerprint=loaded.fingerprint,
            targets=selected,
            provenance={"kind": "imported"},
            task=task,
            description=f"synthetic {task} expert for benchmarking",
        )
        z = {t.name: 1 + 0.01 * torch.randn(t.rank, generator=generator) for t in selected}
        registry.publish(Expert(manifest, z))


def decode_steps(lengths: Sequence[int], slots: int) -> int:
    """Decode steps of a continuous batcher that runs `slots` requests at once and admits the next one in
    order as soon as one finishes (vLLM's first come, first served): the makespan of these output lengths."""
    finishing: list[int] = []  # the step at which each running request finishes
    now = 0
    for length in lengths:
        if len(finishing) == slots:
            now = heapq.heappop(finishing)
        heapq.heappush(finishing, now + length)
    return max(finishing, default=0)


def pass2_steps(rows: Sequence[dict], tokenizer: object, slots: int) -> int:
    """`decode_steps` of a run's pass 2 from its output rows: each expert group on its own, one after
    another, its requests in t2's order (shortest prompt first), completions re-tokenised."""
    groups: dict[str | None, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("expert"), []).append(row)

    def tokens(row: dict) -> int:
        return len(tokenizer(row["completion"], add_special_tokens=False)["input_ids"])  # type: ignore[operator]

    def prompt_length(row: dict) -> int:
        return len(json.dumps(row.get("prompt", row.get("messages")), ensure_ascii=False))

    return sum(decode_steps([tokens(r) for r in sorted(g, key=prompt_length)], slots) for g in groups.values())


def run_once(
    args: argparse.Namespace,
    adapt: str,
    prompts: Path,
    registry: str,
    out: Path,
    engine: str,
    extra: list[str],
    tokenizer: object,
) -> dict:
    command = [
        sys.executable, "-c", cli_code(args.vllm_block_size),
        "--threads", str(args.threads), "--quiet", "run", str(prompts), "--adapt", adapt, "--model", args.model,
        "--registry", registry, "--max-new-tokens", str(args.max_new_tokens), "-o", str(out), "--no-resume", "--json",
        "--engine", engine, "--batch-size", str(args.batch_size), *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"t2 run --adapt {adapt} failed ({result.returncode}): {result.stderr.strip()}")
    summary = json.loads(result.stdout)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    completions = [row["completion"] for row in rows]
    steps = pass2_steps(rows, tokenizer, args.batch_size)
    chars = statistics.mean(map(len, completions))
    return {**summary, "wall": wall, "chars": chars, "texts": completions, "steps": steps}


def cli_code(vllm_block_size: int | None) -> str:
    """t2's command line, optionally with vLLM started at another KV block size (to time t2's choice)."""
    if vllm_block_size is None:
        return "from t2cli.cli.app import main; main()"
    return (
        "import t2cli.engines.vllm as v; start = v.start_llm; "
        f"v.start_llm = lambda **o: start(**{{**o, 'block_size': {vllm_block_size}}}); "
        "from t2cli.cli.app import main; main()"
    )


def pass1_prefix(args: argparse.Namespace) -> None:
    """Pass 1's labelled prefill over the routing prompts, whole prompts against the shared head computed
    once (`HFEngine.label_logprobs`), twice each, alternating; and how far the log-probabilities move."""
    import t2cli.engines.hf as hf
    from t2cli.adapt.routers import answer_labels, routing_labels, routing_prompt
    from t2cli.engines.base import encode_prompt, question_text

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    rows = [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    questions = [question_text(row.get("prompt") or row["messages"]) for row in itertools.islice(rows, args.n)]
    categories = [("gsm8k", "math"), ("mbpp", "code"), ("arc", "science"), ("other", "anything else")]
    labels = routing_labels(loaded.tokenizer, [name for name, _ in categories], loaded.chat)
    prompts = [routing_prompt(loaded.tokenizer, q, categories, labels, loaded.chat) for q in questions]
    encoded = [encode_prompt(loaded.tokenizer, p) for p in prompts]
    engine = hf.HFEngine(loaded, batch_size=16)
    seconds: dict[str, list[float]] = {"whole prompts": [], "shared head once": []}
    results = {}
    for _ in range(2):
        for label, minimum in (("whole prompts", 10**9), ("shared head once", hf.SHARED_PREFIX_MIN)):
            engine_min, hf.SHARED_PREFIX_MIN = hf.SHARED_PREFIX_MIN, minimum
            started = time.perf_counter()
            results[label] = engine.label_logprobs(prompts, answer_labels(labels, loaded.chat))
            seconds[label].append(time.perf_counter() - started)
            hf.SHARED_PREFIX_MIN = engine_min
    whole, shared = results.values()
    print(f"{len(prompts)} routing prompts, {statistics.mean(map(len, encoded)):.0f} tokens on average, "
          f"{hf.shared_prefix_length(encoded)} shared; {args.threads} threads")  # fmt: skip
    for label, times in seconds.items():
        print(f"{label}: {min(times):.2f} s (best of {len(times)})")
    print(f"max |Δ log p| {float((whole - shared).abs().max()):.2e}; same decisions: "
          f"{bool((whole.argmax(1) == shared.argmax(1)).all())}")  # fmt: skip


def agreement(texts: list[str], exact: list[str]) -> float:
    """Share of completions identical to the exact path's."""
    return sum(a == b for a, b in zip(texts, exact, strict=True)) / len(exact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--registry", help="a registry with the model's experts (default: synthetic ones)")
    parser.add_argument("--targets", default="mlp", help="matrices of the synthetic experts")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--prompts", type=Path, default=EXAMPLES, help="JSONL of t2 run lines (first --n used)")
    parser.add_argument("--vllm-block-size", type=int, help="start vLLM with this KV block size instead of t2's")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("T2_THREADS", "2")))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="t2 run's --batch-size (its default: 16)")
    parser.add_argument("--engine", default="hf", help="hf, vllm or auto (both runs use it)")
    parser.add_argument("--lora-ranks", default="", help="comma list: also run pass 2 mixed at these LoRA ranks")
    parser.add_argument("--pass1-prefix", action="store_true", help="only time pass 1 with and without shared head")
    parser.add_argument("--one-expert", help="also answer every prompt with this one expert (pass 2's baseline)")
    parser.add_argument("--probe", action="store_true", help="also time --adapt probe (the registry needs a probe)")
    parser.add_argument("--strategies", help="comma list of routed strategies to time (default: see above)")
    parser.add_argument("--rows", action="store_true", help="also run each strategy with --pass2 rows")
    args = parser.parse_args()
    if args.pass1_prefix:
        pass1_prefix(args)
        return

    with tempfile.TemporaryDirectory(prefix="t2-bench-") as scratch:
        work = Path(scratch)
        prompts = work / "prompts.jsonl"
        write_prompts(prompts, args.n, args.prompts)
        registry = args.registry
        if registry is None:
            registry = str(work / "registry")
            synthetic_registry(Path(registry), args.model, args.targets)
        tokenizer = load_model(args.model, weights=False).tokenizer
        routed = ["prompt"]
        if args.registry is not None:  # a real bank has a `cls` expert: time `t2 run`'s classifier too
            routed.append("classifier")
        if args.probe:
            routed.append("probe")
        if args.strategies:
            routed = args.strategies.split(",")
        variants = {"none": ("none", [])} | {adapt: (adapt, []) for adapt in routed}
        if args.rows:
            variants |= {f"{adapt} rows": (adapt, ["--pass2", "rows"]) for adapt in routed}
        # Mixed batches follow t2 run's default pass 1 on a real bank (the classifier), else `prompt`.
        mixed = "classifier" if "classifier" in variants else "prompt"
        for rank in filter(None, args.lora_ranks.split(",")):
            variants[f"{mixed} lora:{rank}"] = (mixed, ["--lora-rank", rank])
        if args.one_expert:
            variants[f"one {args.one_expert}"] = (args.one_expert, [])
        runs: dict[str, list[dict]] = {label: [] for label in variants}
        for _ in range(args.repeats):
            for index, (label, (adapt, extra)) in enumerate(variants.items()):
                out = work / f"out-{index}.jsonl"
                runs[label].append(run_once(args, adapt, prompts, registry, out, args.engine, extra, tokenizer))

    def median(adapt: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[adapt])

    title = f"t2 run on {args.n} prompts, {args.model}, {args.engine} engine, {args.threads} threads"
    table = Table(title=f"{title}, medians of {args.repeats}")
    columns = (
        "adapt",
        "wall s",
        "run s",
        "pass 1 s",
        "pass 2 s",
        "batching",
        "groups",
        "swaps",
        "steps",
        "chars",
        "agree",
        "experts",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("adapt", "experts") else "right")
    for adapt, results in runs.items():
        experts = ", ".join(f"{name} {count}" for name, count in results[-1]["experts"].items())
        table.add_row(
            adapt,
            f"{median(adapt, 'wall'):.2f}",
            f"{median(adapt, 'seconds'):.2f}",
            f"{median(adapt, 'pass1_seconds'):.2f}",
            f"{median(adapt, 'pass2_seconds'):.2f}",
            results[-1].get("batching", "groups"),
            str(results[-1]["groups"]),
            str(results[-1]["swaps"]),
            str(results[-1]["steps"]),
            f"{median(adapt, 'chars'):.0f}",
            f"{agreement(results[-1]['texts'], runs[adapt.split()[0]][-1]['texts']):.1%}" if " " in adapt else "—",
            experts,
        )
    console = Console()
    console.print(table)
    for adapt in [label for label in runs if label != "none" and not label.startswith("one ")]:
        ratio = median(adapt, "seconds") / median("none", "seconds")
        target = TARGET_RATIOS.get(args.max_new_tokens)
        verdict = f" — {'within' if ratio <= target else 'over'} the {target:.2f}x target" if target else ""
        console.print(f"ratio {adapt}/none (run s): {ratio:.2f}x{verdict}")
    one = f"one {args.one_expert}"
    for label in [label for label in runs if args.one_expert and label.startswith(("prompt", "classifier"))]:
        ratio = median(label, "pass2_seconds") / median(one, "pass2_seconds")
        console.print(f"pass 2 {label} / {one}: {ratio:.2f}x (target for mixed batches: <= {MIXED_TARGET_RATIO:.2f}x)")


if __name__ == "__main__":
    main()
