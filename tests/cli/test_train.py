"""`t2 train` end to end on a tiny model saved as a checkpoint folder, with a user YAML task."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts.registry import Registry
from t2cli.training.config import TrainConfig, load_config
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


@pytest.mark.parametrize(("flag", "value"), [("--lr", "nan"), ("--kl", "inf"), ("--temperature", "nan")])
def test_non_finite_settings_are_refused_before_the_model_loads(tmp_path, flag, value) -> None:
    args = ["train", "--task", "arc", flag, value, "--model", "/nonexistent", "--registry", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "must be a finite number" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_task_is_not_found_before_the_model_loads(tmp_path) -> None:
    args = ["train", "--task", "nosuchtask", "--model", "/nonexistent", "--registry", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3 and "unknown task 'nosuchtask'" in result.stderr


@pytest.mark.parametrize("name", ["../../x", "/tmp/t2-outside"])
def test_an_expert_name_that_is_a_path_is_refused_before_training(tmp_path, t2_home, name) -> None:
    args = ["train", "--task", "arc", "-o", name, "--model", "/nonexistent", "--registry", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "invalid expert name" in result.stderr
    assert not (t2_home / "x").exists() and not (t2_home / "runs").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [("task: arc\nbatchsize: 4\n", "unknown setting(s) batchsize"), ("task: arc\nsteps: 2.5\n", "steps must be")],
)
def test_a_bad_config_file_is_refused_before_the_model_loads(tmp_path, text, message) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(text)
    args = ["train", "--config", str(config), "--model", "/nonexistent", "--registry", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_config_file_trains_and_its_manifest_feeds_back_as_the_same_config(tmp_path, t2_home) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    spec = make_task(tmp_path)
    registry = tmp_path / "registry"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"task: {spec}\nsteps: 5\nbatch_size: 2\nsamples: 2\nmax_new_tokens: 2\nval_every: 2\nval_limit: 2\n"
        "grad_clip: 0.5\ncheckpoint_every: 2\n"
    )
    args = ["train", "--config", str(config), "--steps", "2", "--data", str(tmp_path / "first.jsonl")]
    args += ["--model", str(folder), "--registry", str(registry), "-o", "configured", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    provenance = Registry(registry).resolve("configured").manifest().provenance
    hyperparameters = provenance["hyperparameters"]
    assert hyperparameters == summary["config"]
    assert (hyperparameters["steps"], hyperparameters["grad_clip"], hyperparameters["checkpoint_every"]) == (2, 0.5, 2)
    # The data by name and content, not by the training machine's path; data_sha256 stays for old readers.
    assert provenance["data"]["name"] == "first.jsonl" and provenance["data"]["revision"] is None
    assert provenance["data"]["sha256"] == provenance["data_sha256"]
    assert str(tmp_path) not in json.dumps(provenance["data"])
    stored = tmp_path / "stored.yaml"
    stored.write_text(yaml.safe_dump(hyperparameters))
    assert load_config(stored) == TrainConfig(**summary["config"])
