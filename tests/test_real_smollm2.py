"""End-to-end checks on the embedded SmolLM2-135M-Instruct (converted from its GGUF once per session)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.svd import load_cached
from t2cli.svf import LiveAdapter

pytestmark = pytest.mark.real_model


def test_smollm2_shape_and_targets(smollm2) -> None:
    assert smollm2.model_id == "smollm2-135m"
    assert len(smollm2.targets) == 210
    assert {t.shape for t in smollm2.targets if t.role == "k"} == {(192, 576)}
    assert smollm2.chat


def test_decompose_command_end_to_end(smollm2, smollm2_home, monkeypatch) -> None:
    monkeypatch.setenv("T2_HOME", str(smollm2_home))
    # From an empty cache, whichever real-model tests ran first and filled the session's.
    shutil.rmtree(smollm2_home / "svd", ignore_errors=True)
    runner = CliRunner()
    first = runner.invoke(app, ["--threads", "2", "decompose", "--targets", "mlp", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["matrices"] == 90 and summary["computed"] == 90
    assert summary["z_parameters"] == 90 * 576
    assert summary["lora_r16_parameters"] == 90 * 16 * (576 + 1536)
    assert summary["fingerprint"] == smollm2.fingerprint
    again = runner.invoke(app, ["decompose", "--targets", "mlp", "--json"])
    assert json.loads(again.stdout)["computed"] == 0
    bad = runner.invoke(app, ["decompose", "--targets", "ffn"])
    assert bad.exit_code == 2 and "unknown target 'ffn'" in bad.stderr


def test_identity_and_restore_are_bit_exact_on_real_logits(smollm2, smollm2_home, monkeypatch) -> None:
    monkeypatch.setenv("T2_HOME", str(smollm2_home))
    from t2cli.svd import decompose

    mlp = smollm2.select("mlp")
    factors = decompose(smollm2, mlp).factors
    assert set(load_cached(smollm2, mlp)) == set(factors)
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    base = smollm2.model(ids).logits
    adapter = LiveAdapter(smollm2.model, factors)
    adapter.apply({name: torch.ones_like(f.S) for name, f in factors.items()})
    assert torch.equal(smollm2.model(ids).logits, base)
    adapter.apply({name: torch.full_like(f.S, 1.1) for name, f in factors.items()})
    assert not torch.equal(smollm2.model(ids).logits, base)
    adapter.restore()
    assert torch.equal(smollm2.model(ids).logits, base)


def test_hf_engine_greedy_matches_plain_generate_on_chat_prompts(smollm2) -> None:
    from t2cli.engines.base import Sampling, encode_prompt
    from t2cli.engines.hf import HFEngine

    engine = HFEngine(smollm2, batch_size=4)
    prompts = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "user", "content": "Name a prime number greater than ten."}],
    ]
    generations = engine.generate(prompts, Sampling(max_new_tokens=12))
    for prompt, generation in zip(prompts, generations, strict=True):
        ids = torch.tensor([encode_prompt(smollm2.tokenizer, prompt)])
        plain = smollm2.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=engine.pad_id,
        )
        expected = plain[0, ids.shape[1] :].tolist()
        assert list(generation.token_ids) == expected
        assert generation.text.strip()


def test_eval_command_on_a_few_arc_items(smollm2, smollm2_home, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("T2_HOME", str(smollm2_home))
    rows = [
        {
            "id": "sun",
            "question": {
                "stem": "What gives Earth most of its light?",
                "choices": [
                    {"text": "the Sun", "label": "A"},
                    {"text": "the Moon", "label": "B"},
                    {"text": "a candle", "label": "C"},
                ],
            },
            "answerKey": "A",
        },
        {
            "id": "ice",
            "question": {
                "stem": "Water that freezes becomes",
                "choices": [{"text": "steam", "label": "A"}, {"text": "ice", "label": "B"}],
            },
            "answerKey": "B",
        },
    ]
    data = tmp_path / "arc.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--task",
            "arc:cloze",
            "--data",
            str(data),
            "--mode",
            "likelihood",
            "--registry",
            str(tmp_path / "empty"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["expert"] == "base" and row["n"] == 2 and row["score"] in (0.0, 0.5, 1.0)
