"""On the real SmolLM2 with the bundled bank: `t2 serve` answers a request as `t2 run` answers its line,
streamed or not."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from t2cli.adapt.prepare import make_router
from t2cli.cli.app import app
from t2cli.engines.hf import HFEngine
from t2cli.engines.slot import ExpertSlot
from t2cli.experts.registry import Registry
from t2cli.serve.app import ServeConfig, create_app
from t2cli.serve.service import Service

pytestmark = pytest.mark.real_model

BANK = Path(__file__).resolve().parents[2] / "registry"
PROBLEM = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)


def test_a_greedy_answer_equals_t2_runs_for_the_same_prompt_and_expert(smollm2, smollm2_home, tmp_path, monkeypatch):
    monkeypatch.setenv("T2_HOME", str(smollm2_home))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": PROBLEM}) + "\n")
    args = ["--threads", "2", "run", str(prompts), "--registry", str(BANK), "--max-new-tokens", "32"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])

    slot = ExpertSlot(HFEngine(smollm2), Registry(BANK), smollm2)
    service = Service(slot, make_router("classifier", slot, smollm2, slot.registry))  # t2 run's default --adapt
    try:
        with TestClient(create_app(service, ServeConfig(), io.StringIO())) as client:
            body = {"model": "auto", "prompt": PROBLEM, "max_tokens": 32}
            answer = client.post("/v1/completions", json=body)
            streamed = client.post("/v1/completions", json=body | {"stream": True})
    finally:
        slot.hold(None)  # the session's model is shared: give the other real-model tests its base weights back
    assert answer.status_code == 200, answer.text
    assert row["expert"] == "math@2"  # the bundled classifier sends a GSM8K problem to the math expert
    assert answer.json()["t2"]["expert"] == row["expert"] and answer.headers["x-t2-expert"] == "math@2"
    assert answer.json()["choices"][0]["text"] == row["completion"] and row["completion"]
    assert 0.5 < answer.json()["t2"]["confidence"] <= 1
    # Streamed token by token, the same answer from the same expert.
    events = [line.removeprefix("data: ") for line in streamed.text.split("\n\n") if line]
    chunks = [json.loads(event) for event in events[:-1]]
    pieces = [chunk["choices"][0]["text"] for chunk in chunks if chunk["choices"] and chunk["choices"][0]["text"]]
    assert events[-1] == "[DONE]" and "".join(pieces) == row["completion"] and len(pieces) > 1
    assert streamed.headers["x-t2-expert"] == "math@2" and {chunk["model"] for chunk in chunks} == {"math@2"}
