"""Benchmark: pass 2 with several experts in one batch on the hf engine — PEFT LoRA rows against SVF rows.

    T2_THREADS=2 python tests/bench/bench_mixed_rows.py [--registry registry] [--experts arc@2,math@2]
        [--prompts examples/prompts.jsonl] [--n 48] [--max-new-tokens 32] [--lora-rank 64] [--repeats 3]

The same N prompts, assigned round-robin to each expert and to the base weights, are generated four ways
(greedy, alternating, medians of --repeats):
- one expert: every prompt on the first expert (one swap), the baseline a mixed pass 2 is held against;
- grouped swaps: each expert's prompts in their own batch after an exact swap (`t2 run`'s default);
- PEFT rows: one batch, each row with its expert's rank-R LoRA export (`t2 run --lora-rank R`);
- SVF rows: one batch, each targeted matrix computed as ((x Vhᵀ) ⊙ s z_row) Uᵀ with the row's own z, the
  exact expert on every row with the factors shared (the issue's "own per-row delta on the shared U, Vᵀ").
`agree` is the share of completions identical to grouped swaps (the exact reference).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from bench_two_pass import EXAMPLES, agreement, write_prompts

from t2cli.adapt.runio import read_inputs
from t2cli.config import configure_threads
from t2cli.engines.base import Generation, Prompt, Sampling, encode_prompt
from t2cli.engines.hf import HFEngine
from t2cli.experts.files import Expert
from t2cli.experts.formats.peft_lora import cached_lora
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model
from t2cli.svd import decompose
from t2cli.svf import Factors


@contextmanager
def svf_rows(model: torch.nn.Module, factors: Mapping[str, Factors], rows: Sequence[Expert | None]) -> Iterator[None]:
    """Every targeted linear computes each row with that row's z (z = 1 for a base row), from the shared factors."""
    modules = dict(model.named_modules())
    patched = []
    for name, f in factors.items():
        module = modules[name.removesuffix(".weight")]
        z = torch.stack([torch.ones_like(f.S) if e is None else e.z.get(name, torch.ones_like(f.S)) for e in rows])
        scale = (f.S * z).unsqueeze(1)  # (rows, 1, r)
        vh_t, u_t = f.Vh.T.contiguous(), f.U.T.contiguous()

        def forward(x: torch.Tensor, vh_t=vh_t, u_t=u_t, scale=scale) -> torch.Tensor:
            return ((x @ vh_t) * scale) @ u_t

        module.forward = forward
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # back to the class's own forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--registry", default="registry")
    parser.add_argument("--experts", default="arc@2,math@2")
    parser.add_argument("--prompts", type=Path, default=EXAMPLES)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = configure_threads(None)

    loaded = load_model(args.model)
    registry = Registry(Path(args.registry))
    refs = [registry.resolve(spec, loaded.slug) for spec in args.experts.split(",")]
    experts = [ref.load(loaded.fingerprint) for ref in refs]
    targets = sorted({name for e in experts for name in e.z})
    factors = decompose(loaded, [t for t in loaded.targets if t.name in targets]).factors
    with tempfile.TemporaryDirectory() as scratch:
        lines_file = Path(scratch) / "prompts.jsonl"
        write_prompts(lines_file, args.n, args.prompts)
        lines, _ = read_inputs(lines_file)
    # Sorted by length, the engine's one batch keeps this order, so row i of the batch is prompt i.
    prompts: list[Prompt] = sorted(
        (line.prompt for line in lines), key=lambda p: len(encode_prompt(loaded.tokenizer, p))
    )
    choices: list[Expert | None] = [*experts, None]
    rows = [choices[i % len(choices)] for i in range(len(prompts))]
    loras = [cached_lora(loaded, e, factors, ref.path, args.lora_rank) for e, ref in zip(experts, refs, strict=True)]
    lora_of = {id(e): folder for e, folder in zip(experts, loras, strict=True)}
    engine = HFEngine(loaded, batch_size=len(prompts))
    sampling = Sampling(max_new_tokens=args.max_new_tokens)

    def one_expert() -> list[Generation]:
        engine.set_expert(experts[0].z, experts[0].manifest.svf_rule)
        try:
            return engine.generate(prompts, sampling)
        finally:
            engine.set_expert(None)

    def grouped() -> list[Generation]:
        out: list[Generation | None] = [None] * len(prompts)
        for choice in choices:
            indices = [i for i, row in enumerate(rows) if row is choice]
            engine.set_expert(
                None if choice is None else choice.z, "none" if choice is None else choice.manifest.svf_rule
            )
            for i, generation in zip(indices, engine.generate([prompts[i] for i in indices], sampling), strict=True):
                out[i] = generation
        engine.set_expert(None)
        return [g for g in out if g is not None]

    def peft_rows() -> list[Generation]:
        return engine.generate_mixed(prompts, [None if r is None else lora_of[id(r)] for r in rows], sampling)

    def svf_mixed() -> list[Generation]:
        with svf_rows(loaded.model, factors, rows):
            return engine.generate(prompts, sampling)

    paths = {"one expert": one_expert, "grouped swaps": grouped, "PEFT rows": peft_rows, "SVF rows": svf_mixed}
    peft_rows()  # loads the adapters once, outside the timings
    seconds: dict[str, list[float]] = {label: [] for label in paths}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for label, path in paths.items():
            started = time.perf_counter()
            texts[label] = [g.text for g in path()]
            seconds[label].append(time.perf_counter() - started)
    one = statistics.median(seconds["one expert"])
    setting = f"{args.max_new_tokens} new tokens, hf engine, fp32, {threads} threads, medians of {args.repeats}"
    print(f"{len(prompts)} prompts ({args.experts} and the base, round-robin), {setting}; LoRA rank {args.lora_rank}")
    print("| pass 2 | seconds | against one expert | completions identical to grouped swaps |")
    print("|---|---:|---:|---:|")
    for label, times in seconds.items():
        median = statistics.median(times)
        same = "—" if label == "one expert" else f"{agreement(texts[label], texts['grouped swaps']):.0%}"
        print(f"| {label} | {median:.2f} | {median / one:.2f}× | {same} |")


if __name__ == "__main__":
    main()
