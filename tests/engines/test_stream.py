"""Streamed generation: each row's pieces arrive while its batch decodes and add up to its whole answer."""

from __future__ import annotations

from collections import defaultdict

import pytest

from t2cli.engines.base import Sampling
from t2cli.engines.hf import HFEngine
from t2cli.engines.stream import RowText
from t2cli.models.loading import wrap_model
from tests.helpers import build_tiny_model, tiny_tokenizer

PROMPTS = ["the cat sat", "a", "what is two plus two?", "hello there friend", "b c"]


@pytest.fixture
def engine(t2_home) -> HFEngine:
    model = build_tiny_model("llama", seed=3)
    model.generation_config.eos_token_id = 62
    return HFEngine(wrap_model(model, tiny_tokenizer(), spec="tiny", model_id="tiny"), batch_size=2)


def streamed(engine: HFEngine, sampling: Sampling) -> tuple[list, dict[int, list[str]]]:
    pieces: dict[int, list[str]] = defaultdict(list)
    generations = engine.generate(PROMPTS, sampling, on_text=lambda row, piece: pieces[row].append(piece))
    return generations, pieces


def test_streamed_pieces_add_up_to_the_unstreamed_answer_piece_by_piece(engine: HFEngine) -> None:
    sampling = Sampling(max_new_tokens=16)
    whole = engine.generate(PROMPTS, sampling)
    generations, pieces = streamed(engine, sampling)
    assert generations == whole  # streaming changes nothing about the answers
    assert ["".join(pieces[row]) for row in range(len(PROMPTS))] == [g.text for g in whole]
    assert all(piece for row in pieces.values() for piece in row)
    assert max(len(row) for row in pieces.values()) > 1  # token by token, not one piece at the end


def test_a_stop_string_is_never_shown_even_in_part(engine: HFEngine) -> None:
    free = engine.generate(PROMPTS, Sampling(max_new_tokens=16))
    text = next(g.text for g in free if len(g.text) > 6)
    sampling = Sampling(max_new_tokens=16, stop=(text[3:5],))
    generations, pieces = streamed(engine, sampling)
    assert generations == engine.generate(PROMPTS, sampling)
    assert ["".join(pieces[row]) for row in range(len(PROMPTS))] == [g.text for g in generations]


def test_row_text_holds_back_what_may_still_change() -> None:
    row = RowText(stop=["END"])
    assert row.update("ab") == "ab"
    assert row.update("ab E") == ""  # " E" may start the stop string
    assert row.update("ab EN") == ""
    assert row.update("ab ENx") == " ENx"
    assert row.update("ab ENx \ufffd") == ""  # whitespace and half a UTF-8 character wait for what follows
    assert row.update("ab ENx é") == " é"
    assert row.update("ab ENx éEND more") == ""  # cut at the stop string: done
    assert row.done and row.shown == "ab ENx é"
    assert row.finish("ab ENx é") == ""
    assert RowText(stop=[]).finish("all at once") == "all at once"
