from __future__ import annotations

import pytest
import torch

from t2cli.engines.base import RowExpert, Sampling, cut_at_stop, encode_prompt, label_token_ids
from t2cli.engines.hf import HFEngine
from t2cli.errors import BadInputError, EngineError
from t2cli.models.loading import wrap_model
from tests.helpers import build_tiny_model, tiny_tokenizer

PROMPTS = ["the cat sat", "a", "what is two plus two?", "hello there friend"]


@pytest.fixture
def engine(t2_home) -> HFEngine:
    model = build_tiny_model("llama", seed=3)
    model.generation_config.eos_token_id = 62
    loaded = wrap_model(model, tiny_tokenizer(), spec="tiny", model_id="tiny")
    return HFEngine(loaded, batch_size=3)


def plain_generate(engine: HFEngine, prompt: str, max_new_tokens: int) -> list[int]:
    ids = torch.tensor([encode_prompt(engine.tokenizer, prompt)])
    output = engine.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=engine.pad_id,
    )
    return output[0, ids.shape[1] :].tolist()


def test_batched_greedy_matches_plain_generate_token_for_token(engine: HFEngine) -> None:
    generations = engine.generate(PROMPTS, Sampling(max_new_tokens=12))
    assert len(generations) == len(PROMPTS)
    for prompt, generation in zip(PROMPTS, generations, strict=True):
        expected = plain_generate(engine, prompt, 12)
        ended = 62 in expected
        expected = expected[: expected.index(62) + 1] if ended else expected
        assert list(generation.token_ids) == expected
        assert generation.prompt_tokens == len(encode_prompt(engine.tokenizer, prompt))
        assert generation.finish_reason == ("stop" if ended else "length")


def test_sampling_is_seeded(engine: HFEngine) -> None:
    sampling = Sampling(max_new_tokens=8, temperature=1.0, seed=7)
    first = engine.generate(PROMPTS, sampling)
    assert first == engine.generate(PROMPTS, sampling)
    assert first != engine.generate(PROMPTS, Sampling(max_new_tokens=8, temperature=1.0, seed=8))


def test_stop_strings_cut_the_text(engine: HFEngine) -> None:
    free = engine.generate(PROMPTS, Sampling(max_new_tokens=16))
    text = next(g.text for g in free if len(g.text) > 3)
    stop = text[2]
    stopped = engine.generate(PROMPTS, Sampling(max_new_tokens=16, stop=(stop,)))
    for generation in stopped:
        assert stop not in generation.text
    assert cut_at_stop("abc.def", [".", "e"]) == ("abc", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)


def test_score_is_the_continuation_log_likelihood(engine: HFEngine) -> None:
    prompts = ["the cat", "a dog ran", "x"]
    continuations = [" sat", "fast", " yes."]
    scores = engine.score(prompts, continuations)
    for prompt, continuation, score in zip(prompts, continuations, scores, strict=True):
        head = encode_prompt(engine.tokenizer, prompt)
        tail = engine.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        logits = engine.model(torch.tensor([head + tail])).logits[0]
        logprobs = torch.log_softmax(logits, -1)
        expected = sum(float(logprobs[len(head) - 1 + i, token]) for i, token in enumerate(tail))
        assert score == pytest.approx(expected, abs=1e-4)


def test_set_expert_swaps_and_restores(engine: HFEngine) -> None:
    sampling = Sampling(max_new_tokens=10)
    base = engine.generate(PROMPTS, sampling)
    base_scores = engine.score(PROMPTS, ["abc"] * 4)
    z = {t.name: torch.full((t.rank,), 1.8) for t in engine.loaded.targets}
    engine.set_expert(z)
    assert engine.score(PROMPTS, ["abc"] * 4) != base_scores
    engine.set_expert(None)
    assert engine.generate(PROMPTS, sampling) == base
    assert engine.score(PROMPTS, ["abc"] * 4) == base_scores
    assert engine.swaps == 2


def test_bad_sampling_is_refused() -> None:
    with pytest.raises(BadInputError, match="temperature"):
        Sampling(temperature=-1)
    with pytest.raises(BadInputError, match="max new tokens"):
        Sampling(max_new_tokens=0)


@pytest.fixture
def exports(t2_home, tmp_path):
    """A tiny model with large weights (so experts change its greedy text), two noisy experts of its MLP
    matrices, and each exported at full rank and at rank 4."""
    from t2cli.experts.export import expert_factors
    from t2cli.experts.files import Expert
    from t2cli.experts.formats.peft_lora import export_peft
    from t2cli.experts.manifest import new_manifest
    from tests.helpers import TRAINED_ARC

    model = build_tiny_model("llama", seed=5, initializer_range=0.3)
    model.generation_config.eos_token_id = 62
    loaded = wrap_model(model, tiny_tokenizer(), spec="tiny", model_id="tiny")
    targets = loaded.select("mlp")
    experts, folders = [], {}
    for seed, name in enumerate(("a", "b")):
        generator = torch.Generator().manual_seed(seed)
        z = {t.name: 1 + 0.8 * torch.randn(t.rank, generator=generator) for t in targets}
        manifest = new_manifest(
            name=name, base_model="tiny", base_fingerprint=loaded.fingerprint, targets=targets,
            provenance=TRAINED_ARC, task="arc", description=name,
        )  # fmt: skip
        expert = Expert(manifest, z)
        experts.append(expert)
        factors = expert_factors(loaded, expert)
        for rank in (4, 64):
            folders[name, rank] = tmp_path / f"{name}-{rank}"
            export_peft(loaded, expert, factors, folders[name, rank], rank=rank)
    return loaded, experts, folders


def test_mixed_batch_rows_match_their_adapter_alone(exports) -> None:
    loaded, (a, b), folders = exports
    engine = HFEngine(loaded, batch_size=4)
    sampling = Sampling(max_new_tokens=8)
    base = engine.generate(PROMPTS, sampling)
    chosen = [folders["a", 4], None, folders["b", 4], folders["a", 4]]
    mixed = engine.generate_mixed(PROMPTS, chosen, sampling)
    alone = [engine.generate_mixed([p], [f], sampling)[0] for p, f in zip(PROMPTS, chosen, strict=True)]
    assert mixed == alone and mixed[1] == base[1] and mixed != base
    assert engine.swaps == 0 and engine.generate(PROMPTS, sampling) == base  # the base model is untouched
    # At full rank the LoRA is the expert's exact change: the same completions as swapping W' in.
    full = engine.generate_mixed(PROMPTS, [folders["a", 64], folders["b", 64], None, None], sampling)
    for expert, index in ((a, 0), (b, 1)):
        engine.set_expert(expert.z)
        assert engine.generate([PROMPTS[index]], sampling)[0] == full[index]
    with pytest.raises(EngineError, match="base weights"):
        engine.generate_mixed(PROMPTS[:1], [folders["a", 4]], sampling)


def test_rows_answer_each_prompt_with_its_own_expert_as_a_swap_would(exports) -> None:
    loaded, (a, b), _ = exports
    engine = HFEngine(loaded, batch_size=3)  # two length batches, each with its own rows
    sampling = Sampling(max_new_tokens=8)
    row_a, row_b = RowExpert.of(a.z, "none"), RowExpert.of(b.z, "none")
    chosen = [row_a, None, row_b, row_a]
    base = engine.generate(PROMPTS, sampling)
    mixed = engine.generate_rows(PROMPTS, chosen, sampling)
    streamed: dict[int, list[str]] = {row: [] for row in range(4)}
    assert engine.generate_rows(PROMPTS, chosen, sampling, lambda row, piece: streamed[row].append(piece)) == mixed
    assert ["".join(streamed[row]) for row in range(4)] == [g.text for g in mixed]
    for expert, index in ((a, 0), (b, 2), (a, 3)):
        engine.set_expert(expert.z)
        assert engine.generate([PROMPTS[index]], sampling)[0] == mixed[index]
    engine.set_expert(None)
    assert mixed[1] == base[1] and mixed != base
    assert engine.swaps == 4  # the rows swapped nothing: only the checks above did
    # The dispatch is gone afterwards: the model answers with the base weights again.
    assert engine.generate(PROMPTS, sampling) == base
    assert all("forward" not in module.__dict__ for module in engine.model.modules())
    # Equal weights, equal key: what was built for an expert is reused, and only while it is asked for.
    assert RowExpert.of(dict(a.z), "none").key == row_a.key != RowExpert.of(a.z, "nuclear").key
    engine.generate_rows(PROMPTS[:1], [row_b], sampling)
    assert set(engine._row_weights) == {row_b.key}
    engine.set_expert(a.z)
    with pytest.raises(EngineError, match="base weights"):
        engine.generate_rows(PROMPTS[:1], [row_b], sampling)
    with pytest.raises(BadInputError, match="one per prompt"):
        HFEngine(loaded).generate_rows(PROMPTS, [row_b], sampling)


@pytest.mark.parametrize(
    ("model_type", "window"),
    [("llama", {}), ("gemma3_text", {"sliding_window": 128}), ("gemma3_text", {"sliding_window": 16})],
)
def test_label_logprobs_reuse_the_shared_head_exactly(t2_home, model_type: str, window: dict) -> None:
    # A window narrower than the prompts (the last case) falls back to whole prompts.
    from t2cli.engines.hf import SHARED_PREFIX_MIN, shared_prefix_length

    model = build_tiny_model(model_type, seed=4, initializer_range=0.3, **window)
    engine = HFEngine(wrap_model(model, tiny_tokenizer(), spec="tiny", model_id="tiny"), batch_size=2)
    head = "classify the request below into one of a b c. request: "
    prompts = [head + tail + " category:" for tail in ("what is two plus two", "code", "why is the sky blue ok")]
    encoded = [encode_prompt(engine.tokenizer, p) for p in prompts]
    assert shared_prefix_length(encoded) >= SHARED_PREFIX_MIN  # the head is computed once
    labels = ["a", "b", "c"]
    got = engine.label_logprobs(prompts, labels)
    ids = label_token_ids(engine.tokenizer, labels, chat=False)
    with torch.inference_mode():
        for row, tokens in zip(got, encoded, strict=True):
            logits = model(input_ids=torch.tensor([tokens])).logits[0, -1]
            assert torch.allclose(row, torch.log_softmax(logits[ids], -1), atol=1e-5)
    assert shared_prefix_length([[1, 2, 3], [1, 2]]) == 1 and shared_prefix_length([[5], [5]]) == 0
