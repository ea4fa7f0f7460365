"""Benchmark: sandbox throughput (executions per second) for code-task rewards.

    python tests/bench/bench_sandbox.py [--runs 40] [--workers 1 2]

Rows, per worker count (each row runs --runs programs through `run_many`):
- empty: `pass`, the fixed cost of one run (temp dir, interpreter start, confinement, clean-up);
- mbpp-like: a small function plus three asserts, the typical MBPP/HumanEval reward program;
- failing: the same tests against a wrong function (traceback formatting included);
- raw python: plain `python -I -S -c pass` subprocesses with no sandbox, the floor.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.table import Table

from t2cli.sandbox import run_many, sandbox_policy

TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(10, 5) == 15\n"
PROGRAMS = {
    "empty": "pass\n",
    "mbpp-like": f"def add(a, b):\n    return a + b\n\n{TESTS}",
    "failing": f"def add(a, b):\n    return a - b\n\n{TESTS}",
}


def per_second(runs: int, action: Callable[..., object], *args: object, **options: object) -> str:
    started = time.perf_counter()
    action(*args, **options)
    return f"{runs / (time.perf_counter() - started):.1f}"


def raw_python(runs: int, workers: int) -> None:
    def one(_: int) -> None:
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(runs)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40, help="programs per row (default 40)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    args = parser.parse_args(argv)

    policy = sandbox_policy()
    table = Table(title=f"sandbox executions/s ({args.runs} runs per cell; separate uid: {policy.drops_privileges})")
    table.add_column("program")
    for workers in args.workers:
        table.add_column(f"{workers} worker(s)", justify="right")
    for label, program in PROGRAMS.items():
        table.add_row(label, *(per_second(args.runs, run_many, [program] * args.runs, workers=n) for n in args.workers))
    table.add_row("raw python (floor)", *(per_second(args.runs, raw_python, args.runs, n) for n in args.workers))
    Console().print(table)


if __name__ == "__main__":
    main()
