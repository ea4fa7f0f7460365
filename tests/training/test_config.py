"""TrainConfig: validation in one place, its fields as the one source of `t2 train`'s settings, YAML configs."""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest
import yaml

from t2cli.errors import BadInputError, NotFoundError
from t2cli.training.config import TrainConfig, config_settings, load_config


@pytest.mark.parametrize("field", ["lr", "kl", "temperature", "grad_clip"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused(field, value) -> None:
    with pytest.raises(BadInputError, match=f"{field} must be a finite number"):
        TrainConfig(task="arc", **{field: value})


def test_wrong_types_and_zero_counts_are_refused() -> None:
    with pytest.raises(BadInputError, match="steps must be an integer, got '3'"):
        TrainConfig(task="arc", steps="3")
    with pytest.raises(BadInputError, match="seed must be an integer, got True"):
        TrainConfig(task="arc", seed=True)
    with pytest.raises(BadInputError, match="checkpoint-every must be >= 1"):
        TrainConfig(task="arc", checkpoint_every=0)
    assert TrainConfig(task="arc", lr=1).lr == 1.0 and isinstance(TrainConfig(task="arc", lr=1).lr, float)


def test_every_field_is_a_setting_with_help() -> None:
    settings = config_settings()
    assert [s.name for s in settings] == [f.name for f in fields(TrainConfig)]
    assert all(s.help.strip() for s in settings)
    by_name = {s.name: s for s in settings}
    assert (by_name["val_limit"].kind, by_name["val_limit"].optional, by_name["val_limit"].default) == (int, True, 100)
    assert (by_name["lr"].kind, by_name["lr"].optional) == (float, False)


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(task="arc", steps=7, lr=1e-7, kl=0.0, targets="mlp", val_limit=None, select="last"),
        TrainConfig(task="gsm8k", method="lora", rollout="generate", seed=3),  # rank filled in: 16
    ],
)
def test_stored_hyperparameters_feed_back_as_the_same_config(tmp_path, config) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(asdict(config)))  # as a manifest stores provenance.hyperparameters
    assert load_config(path) == config


def test_flags_override_the_file_and_yaml_exponents_read_as_numbers(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("task: arc\nsteps: 5\nlr: 2e-3\nkl: 1\n")  # YAML 1.1 reads 2e-3 as a string
    config = load_config(path, {"steps": 9})
    assert (config.steps, config.lr, config.kl) == (9, 0.002, 1.0)
    assert load_config(path, {"task": "gsm8k"}).task == "gsm8k"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: arc\nstep: 5\n", "unknown setting(s) step; known: task, method"),
        ("task: arc\nsteps: many\n", "steps must be an integer, got 'many'"),
        ("task: arc\nlr: fast\n", "lr must be a number, got 'fast'"),
        ("task: arc\nkl: .inf\n", "kl must be a finite number"),
        ("- task\n", "must be a YAML mapping"),
        ("steps: 5\n", "names no task"),
        ("task: [arc\n", "is not valid YAML at line"),
        ("a: &x [1]\nb: *x\n", "anchors or aliases"),
    ],
)
def test_bad_config_files_are_refused_in_one_line(tmp_path, text, message) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(BadInputError) as refused:
        load_config(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_missing_config_file_is_not_found(tmp_path) -> None:
    with pytest.raises(NotFoundError, match="absent.yaml does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_a_task_brings_its_own_starting_settings_and_flags_and_files_win(tmp_path) -> None:
    assert (load_config(None, {"task": "mbpp"}).method, load_config(None, {"task": "mbpp"}).steps) == ("nll", 24)
    assert load_config(None, {"task": "mbpp", "steps": 3}).steps == 3  # a flag wins
    path = tmp_path / "run.yaml"
    path.write_text("task: mbpp\nmethod: svf\n")
    assert (load_config(path).method, load_config(path).steps) == ("svf", 24)  # the file wins over the task
    assert load_config(None, {"task": "arc"}).steps == TrainConfig(task="arc").steps  # no defaults of its own
    assert load_config(None, {"task": "my-spec.yaml"}).method == "svf"  # user specs: TrainConfig's defaults
