"""`t2 eval` end to end: base and an expert side by side, in every mode, on a tiny checkpoint folder."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.engines.evaluate import choice_picks, prompt_for
from t2cli.engines.hf import HFEngine
from t2cli.experts.files import Expert
from t2cli.experts.lora import load_lora_adapter
from t2cli.experts.manifest import new_manifest
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model
from t2cli.tasks.registry import resolve_task
from tests.helpers import make_model_folder

ARC_ROWS = [
    {
        "id": f"q{i}",
        "question": {"stem": stem, "choices": [{"text": t, "label": label} for t, label in choices]},
        "answerKey": key,
    }
    for i, (stem, choices, key) in enumerate(
        [
            ("which is hot", [("sun", "A"), ("ice", "B"), ("snow", "C")], "A"),
            ("which is wet", [("sand", "1"), ("rain", "2"), ("dust", "3"), ("rock", "4")], "2"),
            ("which can fly", [("bird", "A"), ("fish", "B")], "A"),
        ]
    )
]


@pytest.fixture
def setup(tmp_path: Path, t2_home):
    folder = make_model_folder(tmp_path / "tiny")
    data = tmp_path / "arc.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ARC_ROWS))
    loaded = load_model(str(folder))
    targets = loaded.select("mlp")
    generator = torch.Generator().manual_seed(0)
    z = {t.name: 1 + 0.5 * torch.randn(t.rank, generator=generator) for t in targets}
    provenance = {
        "kind": "trained",
        "task": "arc",
        "data_sha256": "0" * 64,
        "method": "svf",
        "hyperparameters": {},
        "steps": 1,
        "seed": 0,
    }
    manifest = new_manifest(
        name="sci",
        base_model=loaded.model_id,
        base_fingerprint=loaded.fingerprint,
        targets=targets,
        provenance=provenance,
        task="arc",
    )
    registry = tmp_path / "registry"
    Registry(registry).publish(Expert(manifest, z))
    return folder, data, registry


@pytest.mark.parametrize("mode", ["generate", "choices", "likelihood"])
def test_side_by_side_table_in_every_mode(setup, tmp_path, mode) -> None:
    folder, data, registry = setup
    out = tmp_path / "items.jsonl"
    args = [
        "eval",
        "--task",
        "arc",
        "--data",
        str(data),
        "--model",
        str(folder),
        "--registry",
        str(registry),
        "--base",
        "--expert",
        "sci",
        "--mode",
        mode,
        "--max-new-tokens",
        "4",
        "-o",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["expert"] for r in rows] == ["base", "sci@1"]
    assert all(r["n"] == 3 and 0 <= r["score"] <= 1 and r["mode"] == mode for r in rows)
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(items) == 6 and {i["expert"] for i in items} == {"base", "sci@1"}
    assert all(i["score"] == (i["reward"] + 1) / 2 for i in items)  # the field t2 run rows carry too
    if mode != "generate":
        assert all(i["pick"] is not None and i["completion"] in "ABCD" for i in items)
        per_item = {(i["expert"], i["id"]): i["reward"] for i in items}
        for row in rows:
            rewards = [per_item[(row["expert"], f"q{k}")] for k in range(3)]
            assert row["score"] == pytest.approx(sum((r + 1) / 2 for r in rewards) / 3, abs=1e-4)


def test_bad_mode_and_unknown_expert_fail_clearly(setup) -> None:
    folder, data, registry = setup
    runner = CliRunner()
    bad = runner.invoke(app, ["eval", "--task", "arc", "--mode", "vibes", "--data", str(data)])
    assert bad.exit_code == 2 and "unknown eval mode 'vibes'" in bad.stderr
    missing = runner.invoke(
        app,
        [
            "eval",
            "--task",
            "arc",
            "--data",
            str(data),
            "--model",
            str(folder),
            "--registry",
            str(registry),
            "--expert",
            "nope",
        ],
    )
    assert missing.exit_code == 3 and "nope" in missing.stderr
    generate_only = runner.invoke(
        app,
        [
            "eval",
            "--task",
            "gsm8k",
            "--mode",
            "choices",
            "--data",
            str(data),
            "--model",
            str(folder),
            "--registry",
            str(registry),
        ],
    )
    assert generate_only.exit_code == 2


def test_a_lora_expert_is_evaluated_through_its_adapter(setup, tmp_path) -> None:
    folder, _, registry = setup
    # The answer is always the third choice (ARC shuffles choices in training): a rank-2 adapter finds a
    # preference that beats the base on validation, so the published adapter is a trained one.
    rows = [
        {"id": f"q{i}", "question": {"stem": w, "choices": [{"text": t, "label": t} for t in "ABCD"]}, "answerKey": "C"}
        for i, w in enumerate(["sun", "ice", "rain", "sand", "fog", "dew"])
    ]
    data = tmp_path / "third.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    runner = CliRunner()
    train = ["train", "--task", "arc", "--data", str(data), "--model", str(folder), "--registry", str(registry)]
    train += ["--method", "lora", "--rank", "2", "--steps", "6", "--batch-size", "3", "--lr", "0.05"]
    trained = runner.invoke(app, [*train, "--val-every", "3", "--json", "-o", "sci-lora"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["best_step"] > 0 and summary["val_score"] > summary["base_val_score"]

    items_path = tmp_path / "items.jsonl"
    evaluate = ["eval", "--task", "arc", "--data", str(data), "--model", str(folder), "--registry", str(registry)]
    result = runner.invoke(
        app, [*evaluate, "--base", "--expert", "sci-lora", "--mode", "choices", "--json", "-o", str(items_path)]
    )
    assert result.exit_code == 0, result.output
    assert [r["expert"] for r in json.loads(result.stdout)] == ["base", "sci-lora@1"]
    picks = {(i["expert"], i["id"]): i["pick"] for i in map(json.loads, items_path.read_text().splitlines())}

    # The eval's answers are the PEFT-wrapped model's, whose letter probabilities differ from the base's.
    loaded = load_model(str(folder))
    ref = Registry(registry).resolve("sci-lora")
    adapted = HFEngine(replace(loaded, model=load_lora_adapter(loaded.model, ref.path, fingerprint=loaded.fingerprint)))
    task = resolve_task("arc")
    examples = task.load(str(data), "test")
    prompts = [prompt_for(task, e, loaded.chat) for e in examples]
    assert [picks[("sci-lora@1", e.id)] for e in examples] == choice_picks(adapted, task, examples, prompts)
    base = HFEngine(loaded).label_logprobs(prompts, "ABCD")
    assert not torch.allclose(adapted.label_logprobs(prompts, "ABCD"), base, atol=1e-3)


def test_eval_n_reads_no_line_past_the_first_n_examples(setup, tmp_path) -> None:
    folder, _, registry = setup
    # Three good lines, then a gzip bomb of blank lines past t2's line cap: `-n 3` never reaches it.
    good = "".join(json.dumps(row) + "\n" for row in ARC_ROWS).encode()
    data = tmp_path / "bomb.jsonl.gz"
    data.write_bytes(gzip.compress(good + b"\n" * 2_100_000 + b"{not json\n"))
    args = ["eval", "--task", "arc", "--data", str(data), "--model", str(folder), "--registry", str(registry)]
    args += ["--base", "--mode", "choices", "--json"]
    result = CliRunner().invoke(app, [*args, "-n", "3"])
    assert result.exit_code == 0, result.output
    assert [row["n"] for row in json.loads(result.stdout)] == [3]
    whole = CliRunner().invoke(app, args)
    assert whole.exit_code == 2 and "more than 2,000,000 lines" in whole.stderr
