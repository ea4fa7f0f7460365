"""Memory plan: bytes of the SVD cache, an expert and one SVF training step, from a model's shapes.

    python tests/bench/memory_plan.py [--batch 4] [--seq 512] [--keep 256] [--gpu-gb 80]

Pure arithmetic (no torch, no model): `tests/bench/bench_train_memory.py` prints these predictions next
to what it measures (CUDA max allocated on a GPU). What one training step holds on each device, with
the side path (t2cli/side_path.py) and chunked scoring (t2cli/training/logprobs.py):
- weights: every parameter in the compute dtype; with `shards` processes (FSDP, t2cli/training/sharding.py)
  each holds 1/shards of every decoder layer and the whole embeddings, final norm and head;
- side factors: U_k, V_k of each target in the compute dtype, (m + n)·k values (k = `rank`, or min(m, n)
  for the full spectrum), split like the layers under FSDP; s_k in fp32;
- gathered: under FSDP, one layer's weights and factors gathered whole, and the next one prefetched;
- side activations: autograd keeps V_kᵀx (tokens × k) per target for ∂L/∂c at rank k; the full
  spectrum computes through W′ instead (side_path.cheaper_route), keeping each layer input x and one
  transient W′ and m × n gradient. Where one copy of the targets takes at most a quarter of the free
  memory, SVFPolicy keeps each W′ for the step (side_path.KeptWeights, built once instead of twice a
  call): add the targets' bytes in the compute dtype then. The plan counts the rebuilt floor, which is
  what a device without that room runs;
- activations: kept for backward, ≈ (9h + 3kv + 4i) compute-dtype values per token and layer (HF Llama,
  SDPA attention, no activation checkpointing), for a micro-batch of `batch` sequences of `seq` tokens;
- scoring: the final hidden states of the `keep` scored positions (policy and base), and one chunk of
  256 positions' vocabulary-sized fp32 tensors (logits, log-softmax, probabilities, the base's two, the
  KL terms: six), whatever the batch.
No m × n gradient is kept, and no W′ beyond the optional kept copy. The SVD cache on disk still holds
the full factors (one `t2 decompose`, streamed); training at rank k reads only s and the first k rows
of Vᵀ from it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GB = 1e9
ROLES = ("q", "k", "v", "o", "gate", "up", "down")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CHUNK_TOKENS = 256  # t2cli.training.logprobs.CHUNK_TOKENS
VOCAB_TENSORS = 6


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

    def layer_parameters(self) -> int:
        return sum(m * n for m, n in self.matrices()) + 2 * self.hidden

    def outer_parameters(self) -> int:
        """Embeddings, head (unless tied) and final norm: what FSDP leaves whole in every process."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden


SMOLLM2_135M = Shapes("SmolLM2-135M", hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152,
                      tied=True)  # fmt: skip
LLAMA_3_8B = Shapes("Llama-3-8B", hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=128256)
LLAMA_3_70B = Shapes("Llama-3-70B", hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8, vocab=128256)


@dataclass(frozen=True)
class Plan:
    weights: float
    cache: float
    expert: float
    factors: float
    gathered: float
    side_activations: float
    activations: float
    scoring: float

    @property
    def step(self) -> float:
        parts = (self.weights, self.factors, self.gathered, self.side_activations, self.activations, self.scoring)
        return sum(parts)


def plan(
    shapes: Shapes,
    *,
    dtype: str = "bfloat16",
    cache_dtype: str = "float32",
    roles: tuple[str, ...] = ROLES,
    rank: int | None = None,
    shards: int = 1,
    recompute: bool = False,
    batch: int = 4,
    seq: int = 512,
    keep: int = 256,
) -> Plan:
    """Bytes of each part on one device for SVF on `roles` of every layer (see the module docstring)."""
    b = DTYPE_BYTES[dtype]
    targets = shapes.matrices(roles)

    def held(m: int, n: int) -> int:
        return min(rank or min(m, n), min(m, n))

    layer_factor_values = sum((m + n) * held(m, n) for m, n in targets)
    h, i, kv = shapes.hidden, shapes.intermediate, shapes.kv_heads * shapes.head_dim
    tokens = batch * seq
    return Plan(
        weights=(shapes.outer_parameters() + shapes.layers * shapes.layer_parameters() / shards) * b,
        cache=shapes.layers
        * sum(m * min(m, n) + min(m, n) + min(m, n) * n for m, n in targets)
        * DTYPE_BYTES[cache_dtype],
        expert=shapes.layers * sum(min(m, n) for m, n in targets) * 4,
        factors=shapes.layers * (layer_factor_values * b / shards + sum(held(m, n) for m, n in targets) * 4),
        gathered=2 * (shapes.layer_parameters() + layer_factor_values) * b if shards > 1 else 0.0,
        side_activations=(
            tokens * (1 if recompute else shapes.layers) * sum(held(m, n) for m, n in targets) * b
            if rank
            # The full spectrum over a long micro-batch is rebuilt per call (side_path.cheaper_route): autograd
            # keeps each distinct layer input (attention's, o's, the MLP's, down's), and one W′ and one fp32
            # m × n gradient exist at a time.
            else tokens * (1 if recompute else shapes.layers) * (3 * h + i) * b
            + max(m * n for m, n in targets) * (b + 4)
        ),
        # --recompute keeps each layer's input and one layer's activations at a time (run again in backward).
        activations=(tokens * shapes.layers * h + tokens * (9 * h + 3 * kv + 4 * i)) * b
        if recompute
        else tokens * shapes.layers * (9 * h + 3 * kv + 4 * i) * b,
        scoring=2 * batch * keep * h * b + min(CHUNK_TOKENS, batch * keep) * shapes.vocab * 4 * VOCAB_TENSORS,
    )


def table(batch: int, seq: int, keep: int, gpu_gb: float) -> list[str]:
    header = ("| model | targets | rank | devices | micro-batch, layers | weights | factors | gathered | side act."
              " | activations | scoring | step | fits in {gpu} GB |")  # fmt: skip
    rows = [header.format(gpu=f"{gpu_gb:g}"), "|" + "---|" * 13]
    cases = [
        (LLAMA_3_8B, 1, batch, False),
        (LLAMA_3_70B, 8, 1, False),
        (LLAMA_3_70B, 8, batch, False),
        (LLAMA_3_70B, 8, batch, True),
    ]
    for shapes, shards, rows_per_batch, recompute in cases:
        for label, roles in (("all", ROLES), ("mlp", ROLES[4:])):
            for rank in (64, None):
                p = plan(shapes, roles=roles, rank=rank, shards=shards, recompute=recompute, batch=rows_per_batch,
                         seq=seq, keep=keep)  # fmt: skip
                fits = "yes" if p.step <= gpu_gb * GB else "no"
                kept = "recomputed" if recompute else "kept"
                rows.append(
                    f"| {shapes.name} | {label} | {rank or 'full'} | {shards} | {rows_per_batch} × {seq}, {kept}"
                    f" | {p.weights / GB:.1f} | {p.factors / GB:.1f} | {p.gathered / GB:.1f}"
                    f" | {p.side_activations / GB:.1f} | {p.activations / GB:.1f} | {p.scoring / GB:.2f}"
                    f" | {p.step / GB:.1f} | {fits} |"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="sequences per micro-batch")
    parser.add_argument("--seq", type=int, default=512, help="tokens per sequence (prompt + completion)")
    parser.add_argument("--keep", type=int, default=256, help="scored (completion) positions per sequence")
    parser.add_argument("--gpu-gb", type=float, default=80.0, help="GPU memory to compare the step with")
    args = parser.parse_args()
    print(f"GB = 1e9 bytes; weights and activations in bf16; {args.keep} scored positions per sequence")
    print("\n".join(table(args.batch, args.seq, args.keep, args.gpu_gb)))


if __name__ == "__main__":
    main()
