"""Benchmark: `t2 serve` under 1, 8 and 32 concurrent clients against `t2 run` on the same held-out requests.

    python tests/bench/bench_serve.py [--model smollm2-135m] [--registry registry] [--n 32] [--latency-n 16]
        [--max-new-tokens 64] [--clients 1,8,32] [--rounds 2] [--threads 2] [--engine hf] [--adapt probe]
        [--batch-window 0.02] [--data DIR] [--out DIR]

Requests: the first n/3 test items each of ARC-Easy, GSM8K and MBPP (the developers' data, tests/shared_data.py),
each as its task's chat prompt without any answer fields, shuffled with seed 0; greedy, `model: auto` (routed
by the server's --adapt, `t2 run`'s default). Each round, one phase after another (never two on the cores):
1. `t2 run` on the requests file: its own two-pass timer (`seconds`, the model load excluded);
2. the server (started once, before the first round) under each client count: that many client threads send
   the n requests, each taking the next one waiting, timing each request and the round;
3. plain generate: each request's chat prompt alone through the engine on the base weights, in this process —
   what one client's latency is held against (no routing, no swap, no HTTP).
One client (one request at a time) and plain generate answer only the first --latency-n requests, which is
enough for a median and keeps a round short.
Throughput is requests (and generated tokens) per second, the median of the rounds; latency p50/p95 over
all requests of all rounds; `batches` the server's batches in each round. `agree` counts the served answers
equal to `t2 run`'s for the same line (same expert, same text). Targets (issue #28): 32 clients >= 0.8x
`t2 run`'s requests/s; one client's p50 <= 1.3x plain generate's p50.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

from t2cli.adapt.options import DEFAULT_ADAPT
from t2cli.engines import make_engine
from t2cli.engines.base import Sampling
from t2cli.fsutil import write_jsonl
from t2cli.models.loading import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests.shared_data, tests.bench
from tests.bench.bench_payoff import labelled_lines
from tests.shared_data import bench_data

ROOT = Path(__file__).resolve().parents[2]

TARGET_THROUGHPUT = 0.8  # 32 clients against t2 run's batch
TARGET_LATENCY = 1.3  # one client's p50 against plain generate's


def build_requests(data: Path, n: int) -> list[dict]:
    each = -(-n // 3)
    sources = [
        ("arc:text", "arc", data / "arc_easy"),
        ("gsm8k", "gsm8k", data / "gsm8k" / "test.jsonl"),
        ("mbpp", "mbpp", data / "mbpp" / "mbpp.jsonl"),
    ]
    lines = [line for spec, name, source in sources for line in labelled_lines(spec, name, source, "test", each)]
    random.Random(0).shuffle(lines)
    return [{"id": line["id"], "messages": line["messages"]} for line in lines[:n]]


def tracked_registry(source: Path, copy: Path) -> Path:
    """The registry's committed experts only, copied (a working tree may hold others' experts of the same tasks,
    which would make `auto` ambiguous)."""
    listed = subprocess.run(["git", "ls-files", "-z", str(source)], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        target = copy / Path(name).relative_to(source.relative_to(ROOT))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, target)
    return copy


def t2_run(args: argparse.Namespace, requests: Path, out: Path) -> tuple[dict, list[dict]]:
    command = [sys.executable, "-m", "t2cli", "--threads", str(args.threads), "run", str(requests)]
    command += ["--registry", str(args.registry), "--adapt", args.adapt, "--engine", args.engine, "--model", args.model]
    command += ["--max-new-tokens", str(args.max_new_tokens), "-o", str(out), "--no-resume", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: t2 run failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return json.loads(result.stdout), rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "t2cli", "--threads", str(args.threads), "serve", "--port", str(port)]
    command += ["--registry", str(args.registry), "--adapt", args.adapt, "--engine", args.engine, "--model", args.model]
    command += ["--batch-window", str(args.batch_window)]
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.PIPE, text=True)
    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"error: t2 serve exited: {server.stderr.read() if server.stderr else ''}")
        time.sleep(0.5)
    server.kill()
    raise SystemExit("error: t2 serve did not come up in 10 minutes")


def serve_round(url: str, requests: list[dict], clients: int, max_tokens: int) -> tuple[float, list[dict]]:
    """The n requests sent by `clients` threads; the round's seconds and each request's answer and latency."""
    waiting: queue.Queue[int] = queue.Queue()
    for index in range(len(requests)):
        waiting.put(index)
    answers: list[dict] = [{} for _ in requests]
    start = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=3600) as http:
            start.wait()
            while True:
                try:
                    index = waiting.get_nowait()
                except queue.Empty:
                    return
                body = {"model": "auto", "messages": requests[index]["messages"], "max_tokens": max_tokens}
                sent = time.perf_counter()
                response = http.post("/v1/chat/completions", json={**body, "temperature": 0})
                latency = time.perf_counter() - sent
                response.raise_for_status()
                answer = response.json()
                answers[index] = {
                    "latency": latency,
                    "text": answer["choices"][0]["message"]["content"],
                    "expert": answer["t2"]["expert"],
                    "tokens": answer["usage"]["completion_tokens"],
                }

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, answers


def batches(url: str) -> int:
    """Batches the server has answered so far (its Prometheus counter)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return int(float(next(line.split()[-1] for line in text.splitlines() if line.startswith("t2_batches_total"))))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--registry", type=Path, default=ROOT / "registry")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--latency-n", type=int, default=16, help="requests sent by one client, and plain generate")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engine", default="hf")
    parser.add_argument("--adapt", default=DEFAULT_ADAPT)
    parser.add_argument("--batch-window", type=float, default=0.02)
    parser.add_argument("--data", type=Path, help="the developers' data folder (default: $T2_TEST_DATA)")
    parser.add_argument("--out", type=Path, help="keep the requests, answers and access log here")
    args = parser.parse_args()
    data = args.data or bench_data()
    counts = [int(c) for c in args.clients.split(",")]
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    out.mkdir(parents=True, exist_ok=True)
    args.registry = tracked_registry(args.registry.resolve(), out / "registry")
    requests = build_requests(data, args.n)
    requests_file = out / "requests.jsonl"
    write_jsonl(requests_file, requests)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, weights=args.engine != "vllm")
    engine = make_engine(args.engine, loaded, batch_size=1)
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    port = free_port()
    server = start_server(args, port, out / "access.jsonl")
    url = f"http://127.0.0.1:{port}"
    runs: list[dict] = []
    served: dict[int, list[tuple[float, list[dict]]]] = {c: [] for c in counts}
    batch_counts: dict[int, list[int]] = {c: [] for c in counts}
    plain: list[float] = []
    try:
        serve_round(url, requests[:2], 1, args.max_new_tokens)  # warm-up: first swaps, first batch
        engine.generate([requests[0]["messages"]], sampling)
        for round_number in range(args.rounds):
            summary, rows = t2_run(args, requests_file, out / f"run-{round_number}.jsonl")
            runs.append(summary)
            for clients in counts:
                sent = requests[: args.latency_n] if clients == 1 else requests
                before = batches(url)
                served[clients].append(serve_round(url, sent, clients, args.max_new_tokens))
                batch_counts[clients].append(batches(url) - before)
            for request in requests[: args.latency_n]:
                began = time.perf_counter()
                engine.generate([request["messages"]], sampling)
                plain.append(time.perf_counter() - began)
    finally:
        server.terminate()
        server.wait(120)
    by_id = {row["id"]: row for row in rows}
    run_seconds = [run["seconds"] for run in runs]
    run_rate = args.n / statistics.median(run_seconds)
    print(f"{args.n} requests, {args.max_new_tokens} new tokens, engine {args.engine}, --adapt {args.adapt}, ", end="")
    print(f"{args.threads} threads, window {args.batch_window} s, {args.rounds} rounds; plain generate p50 ", end="")
    print(
        f"{statistics.median(plain):.2f} s; t2 run {statistics.median(run_seconds):.2f} s ({run_rate:.2f} req/s: ",
        end="",
    )
    passes = [statistics.median(run[key] for run in runs) for key in ("pass1_seconds", "pass2_seconds", "swaps")]
    print("pass 1 {:.2f} s, pass 2 {:.2f} s, {:g} swaps)".format(*passes))
    print("| clients | requests/s | tokens/s | × t2 run | p50 s | p95 s | p50 × plain generate | batches | agree |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for clients, rounds in served.items():
        rates = [len(answers) / seconds for seconds, answers in rounds]
        token_rates = [sum(a["tokens"] for a in answers) / seconds for seconds, answers in rounds]
        latencies = [a["latency"] for _, answers in rounds for a in answers]
        agree = sum(
            a["text"] == by_id[r["id"]]["completion"] and a["expert"] == by_id[r["id"]]["expert"]
            for _, answers in rounds
            for a, r in zip(answers, requests, strict=False)
        )
        p50 = statistics.median(latencies)
        print(
            f"| {clients} | {statistics.median(rates):.2f} | {statistics.median(token_rates):.1f} "
            f"| {statistics.median(rates) / run_rate:.2f}× | {p50:.2f} | {percentile(latencies, 0.95):.2f} "
            f"| {p50 / statistics.median(plain):.2f}× | {','.join(map(str, batch_counts[clients]))} "
            f"| {agree}/{len(latencies)} |"
        )
    whole = next((rounds[0][1] for clients, rounds in served.items() if clients != 1), None)  # all n requests
    if whole is not None:  # the same answers (see `agree`), so the same tokens
        print(f"t2 run: {sum(a['tokens'] for a in whole) / statistics.median(run_seconds):.1f} tokens/s; ", end="")
    print("targets: 32 clients >= ", end="")
    print(f"{TARGET_THROUGHPUT}× t2 run, one client's p50 <= {TARGET_LATENCY}× plain generate. Files: {out}")


if __name__ == "__main__":
    main()
