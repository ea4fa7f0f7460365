"""Memory plan: bytes of the SVD cache, an expert and one SVF training step, from a model's shapes.

    python tests/bench/memory_plan.py [--batch 4] [--seq 512] [--keep 256] [--gpu-gb 80]

Pure arithmetic (no torch, no model): `tests/bench/bench_scale.py` prints these predictions next to
what it measures on a random model of the same layer shapes. What a training step holds, in the
order `t2cli.training.policy.SVFPolicy.step` allocates it:
- weights: every parameter in the compute dtype;
- factors: U, s, Vh of the targeted matrices, resident on the device in the cache's dtype;
- W'(z) and its gradient: one compute-dtype copy of each targeted matrix for the step, and one for
  the gradient the micro-batches collect (z's own gradient needs only the factors, see svf.py);
- transient: the fp32 W and U diag(c) Vh of the largest matrix while W'(z) is built;
- activations: kept for backward, ≈ (9h + 3kv + 4i) compute-dtype values per token and layer (HF
  Llama with SDPA attention, no activation checkpointing), for a micro-batch of `batch` sequences
  of `seq` tokens;
- logits: the scored `keep` positions in the compute dtype, plus fp32 logits and log-softmax.
Serving with the hf engine holds the weights, the factors and one adapted copy of each target.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GB = 1e9
ROLES = ("q", "k", "v", "o", "gate", "up", "down")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shapes:
    """A Llama-style decoder (the shapes that matter for memory)."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def with_layers(self, layers: int) -> Shapes:
        return Shapes(f"{self.name} ({layers} layers)", self.hidden, self.intermediate, layers, self.heads,
                      self.kv_heads, self.vocab, self.tied)  # fmt: skip

    def matrices(self, roles: tuple[str, ...] = ROLES) -> list[tuple[int, int]]:
        """(out, in) of each targeted matrix of one layer, as transformers stores them."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        shapes = {"q": (q, h), "k": (kv, h), "v": (kv, h), "o": (h, q), "gate": (i, h), "up": (i, h), "down": (h, i)}
        return [shapes[role] for role in roles]

    def parameters(self) -> int:
        per_layer = sum(m * n for m, n in self.matrices()) + 2 * self.hidden
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * per_layer + self.hidden


LLAMA_3_8B = Shapes("Llama-3-8B", hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=128256)
LLAMA_3_70B = Shapes("Llama-3-70B", hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8, vocab=128256)


@dataclass(frozen=True)
class Plan:
    weights: float
    cache: float
    expert: float
    factors: float
    adapted: float  # W'(z) plus its gradient
    transient: float
    activations: float
    logits: float

    @property
    def step(self) -> float:
        return self.weights + self.factors + self.adapted + self.transient + self.activations + self.logits

    @property
    def serve(self) -> float:
        """Serving an expert: the weights, resident factors, and one adapted copy of each target (the base
        stays referenced so restoring is exact); KV cache and activations not included."""
        return self.weights + self.factors + self.adapted / 2


def plan(
    shapes: Shapes,
    *,
    dtype: str = "bfloat16",
    cache_dtype: str = "float32",
    roles: tuple[str, ...] = ROLES,
    batch: int = 4,
    seq: int = 512,
    keep: int = 256,
) -> Plan:
    """Bytes of each part for SVF on `roles` of every layer (see the module docstring)."""
    b, c = DTYPE_BYTES[dtype], DTYPE_BYTES[cache_dtype]
    targets = shapes.matrices(roles)
    factor_values = shapes.layers * sum(m * min(m, n) + min(m, n) + min(m, n) * n for m, n in targets)
    target_values = shapes.layers * sum(m * n for m, n in targets)
    rank_values = shapes.layers * sum(min(m, n) for m, n in targets)
    largest = max(targets, key=lambda mn: mn[0] * mn[1])
    h, i, kv = shapes.hidden, shapes.intermediate, shapes.kv_heads * shapes.head_dim
    return Plan(
        weights=shapes.parameters() * b,
        cache=factor_values * c,
        expert=rank_values * 4,
        factors=factor_values * c,
        adapted=2 * target_values * b,
        transient=2 * largest[0] * largest[1] * 4 + largest[0] * min(largest) * 4,
        activations=batch * seq * shapes.layers * (9 * h + 3 * kv + 4 * i) * b,
        logits=batch * keep * shapes.vocab * (b + 8),
    )


def table(batch: int, seq: int, keep: int, gpu_gb: float) -> list[str]:
    header = "| model | targets | cache fp32 | cache bf16 | expert | weights | factors | W'+grad | activations | logits | step | fits in {gpu} GB | serve | fits |"  # noqa: E501
    rows = [header.format(gpu=f"{gpu_gb:g}"), "|" + "---|" * 14]
    for shapes in (LLAMA_3_8B, LLAMA_3_70B):
        for label, roles in (("all", ROLES), ("mlp", ROLES[4:]), ("attn", ROLES[:4])):
            for cache_dtype in ("float32", "bfloat16"):
                p = plan(shapes, cache_dtype=cache_dtype, roles=roles, batch=batch, seq=seq, keep=keep)
                fp32_cache = plan(shapes, cache_dtype="float32", roles=roles).cache
                bf16_cache = plan(shapes, cache_dtype="bfloat16", roles=roles).cache
                fits, serves = ("yes" if size <= gpu_gb * GB else "no" for size in (p.step, p.serve))
                rows.append(
                    f"| {shapes.name} | {label}, factors {cache_dtype} | {fp32_cache / GB:.1f} | {bf16_cache / GB:.1f}"
                    f" | {p.expert / 1e6:.2f} MB | {p.weights / GB:.1f} | {p.factors / GB:.1f} | {p.adapted / GB:.1f}"
                    f" | {p.activations / GB:.1f} | {p.logits / GB:.2f} | {p.step / GB:.1f} | {fits}"
                    f" | {p.serve / GB:.1f} | {serves} |"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="sequences per micro-batch")
    parser.add_argument("--seq", type=int, default=512, help="tokens per sequence (prompt + completion)")
    parser.add_argument("--keep", type=int, default=256, help="scored (completion) positions per sequence")
    parser.add_argument("--gpu-gb", type=float, default=80.0, help="GPU memory to compare the step with")
    args = parser.parse_args()
    print(f"GB = 1e9 bytes; weights and activations in bf16; micro-batch {args.batch} x {args.seq} tokens, "
          f"{args.keep} scored")  # fmt: skip
    print("\n".join(table(args.batch, args.seq, args.keep, args.gpu_gb)))


if __name__ == "__main__":
    main()
