from __future__ import annotations

import pytest
import torch

from t2cli.engines.base import Sampling, cut_at_stop, encode_prompt
from t2cli.engines.hf import HFEngine
from t2cli.errors import BadInputError
from t2cli.models import wrap_model
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
