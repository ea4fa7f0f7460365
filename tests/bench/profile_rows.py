"""Profile: where vLLM's one-batch pass 2 (`--pass2 rows`) spends its time, against groups, on one engine.

    T2_HOME=... python tests/bench/profile_rows.py --registry PATH --prompts FILE [--n 64] [--max-new-tokens 256]
                                                   [--route arc=arc@2,gsm8k=math@2,math=math@2] [--threads 2]

Each of the first N lines of FILE (`t2 run` lines; bench_probe.py's heldout.jsonl) goes to the expert that
--route names for its source (the id's part before "/"; other sources: the base weights). One vLLM engine
answers them greedily: every line with the base (`generate`); every expert in one batch (`generate_rows`:
once to build the experts' kernels, then again under cProfile); then one expert group at a time after a
swap (`groups`). Prints the seconds of each, the profiled run's engine steps, and how many kernels its
adapted layers called per call: 1.0 when no step mixes experts, up to the number of experts when all do.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from t2cli.config import configure_threads
from t2cli.engines import make_engine
from t2cli.engines.base import RowExpert, Sampling
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model


def timed(label: str, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    print(f"{label}: {time.perf_counter() - started:.2f} s", flush=True)


def calls(stats: pstats.Stats, module: str, function: str, caller: tuple[str, str] | None = None) -> int:
    """Calls of the profiled function `function` defined in a file named `module` (only those made by the
    function `caller` = (its file, its name), when given)."""
    total = 0
    for (file, _, name), (_, count, _, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name != function or not file.endswith(module):
            continue
        if caller is None:
            total += count
        else:
            total += sum(c[1] for (f, _, n), c in callers.items() if n == caller[1] and f.endswith(caller[0]))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--prompts", type=Path, required=True)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--route", default="arc=arc@2,gsm8k=math@2,math=math@2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    route = dict(pair.split("=", 1) for pair in args.route.split(","))
    lines = [json.loads(line) for line in args.prompts.read_text().splitlines() if line.strip()][: args.n]
    prompts = [[{"role": "user", "content": line["prompt"]}] for line in lines]
    specs = [route.get(line["id"].split("/")[0]) for line in lines]
    loaded = load_model(None, weights=False)
    registry = Registry(Path(args.registry))
    z = {spec: registry.resolve(spec, loaded.slug).load(loaded.fingerprint).z for spec in set(specs) - {None}}
    experts = {spec: RowExpert.of(vectors, "none") for spec, vectors in z.items()}
    rows = [None if spec is None else experts[spec] for spec in specs]
    print({spec or "base": specs.count(spec) for spec in set(specs)}, flush=True)
    engine = make_engine("vllm", loaded, batch_size=16)
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    engine.generate(prompts[:2], Sampling(max_new_tokens=2))  # the engine's first-call costs

    timed("base, every line", lambda: engine.generate(prompts, sampling))
    timed("rows, kernels built first", lambda: engine.generate_rows(prompts, rows, sampling))
    profile = cProfile.Profile()
    profile.enable()
    timed("rows, profiled", lambda: engine.generate_rows(prompts, rows, sampling))
    profile.disable()

    def groups() -> None:
        for spec in sorted(set(specs), key=lambda spec: spec is not None):  # the base first, as t2 run does
            engine.set_expert(None if spec is None else z[spec])
            engine.generate([prompt for prompt, own in zip(prompts, specs, strict=True) if own == spec], sampling)
        engine.set_expert(None)

    timed("groups, a swap per expert", groups)
    stats = pstats.Stats(profile)
    steps = calls(stats, "llm_engine.py", "step")
    layer_calls = calls(stats, "vllm_worker.py", "linear")  # t2's per-row dispatcher on each adapted layer
    kernel_calls = calls(stats, "utils.py", "<lambda>", caller=("vllm_worker.py", "linear"))  # vLLM's CPU kernels
    print(f"rows, profiled: {steps} engine steps; adapted-layer calls {layer_calls}, their kernel calls "
          f"{kernel_calls}: {kernel_calls / max(layer_calls, 1):.2f} kernels per call")  # fmt: skip


if __name__ == "__main__":
    main()
