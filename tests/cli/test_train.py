"""`t2 train` end to end on a tiny model saved as a checkpoint folder, with a user YAML task."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts.registry import Registry
from tests.helpers import make_model_folder, make_task


def test_train_publishes_a_verified_expert_with_provenance(tmp_path, t2_home) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    spec = make_task(tmp_path)
    registry = tmp_path / "registry"
    runner = CliRunner()
    args = [
        "train",
        "--task",
        str(spec),
        "--model",
        str(folder),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--samples",
        "2",
        "--max-new-tokens",
        "2",
        "--val-every",
        "3",
        "--val-limit",
        "2",
        "--registry",
        str(registry),
        "-o",
        "first",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["expert"] == "first@1" and summary["steps"] == 3 and summary["rollout"] == "generate"
    manifest = Registry(registry).resolve("first").manifest()
    assert manifest.task == "first-letter"
    assert manifest.provenance["kind"] == "trained" and manifest.provenance["hyperparameters"]["steps"] == 3
    assert set(manifest.metrics) >= {"val_score", "base_val_score"}
    assert runner.invoke(app, ["registry", "verify", "--registry", str(registry)]).exit_code == 0
    log = (t2_home / "runs" / "tiny" / "first" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2, 3]


def test_train_refuses_bad_options_before_loading_anything(tmp_path) -> None:
    result = CliRunner().invoke(app, ["train", "--task", "arc", "--baseline", "median", "--registry", str(tmp_path)])
    assert result.exit_code == 2 and "unknown baseline 'median'" in result.stderr
    result = CliRunner().invoke(app, ["train", "--task", "cls", "--model", "/nonexistent", "--registry", str(tmp_path)])
    assert result.exit_code == 3
