"""The registry under attack, round 3: hostile Hub names, a full disk during compose and pull, and folders
that listings skip but verify must report."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.errors import BadInputError
from t2cli.experts.registry import Registry
from t2cli.experts.remotes.base import parse_remote
from t2cli.experts.remotes.hub import catalog_from_files, hub_errors
from t2cli.experts.versions import LAST_VERSION_FILE
from tests.helpers import make_expert


@pytest.fixture
def registry(tmp_path: Path, t2_home: Path) -> Registry:
    store = Registry(tmp_path / "registry")
    store.publish(make_expert("arc", seed=0))
    return store


def t2(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_line(outcome: tuple[int, str, str], code: int, text: str) -> None:
    exit_code, out, err = outcome
    assert (exit_code, out) == (code, ""), err
    assert err.startswith("error: ") and err.count("\n") == 1 and text in err, err


@pytest.mark.parametrize(
    "url", ["hf://user/répo", "hf://user/" + "r" * 97, "hf://üser/repo", "hf://user/re--po", "hf://user/repo.git"]
)
def test_a_hub_name_the_hub_refuses_is_bad_input_before_any_request(registry: Registry, url: str) -> None:
    with pytest.raises(BadInputError, match="bad Hub remote"):
        parse_remote(url)
    root = ["--registry", str(registry.root)]
    one_line(t2("registry", "pull", url, "arc", *root), 2, "bad Hub remote")
    one_line(t2("registry", "push", "arc", url, *root), 2, "bad Hub remote")
    assert parse_remote("hf://user/" + "r" * 96).repo_id == "user/" + "r" * 96


def test_the_hubs_own_validation_error_is_one_line() -> None:
    from huggingface_hub.errors import HFValidationError

    with pytest.raises(BadInputError, match="bad Hub remote"), hub_errors(parse_remote("hf://me/bank"), "x"):
        raise HFValidationError("Repo id must use alphanumeric chars")


def test_a_version_past_int_conversion_on_a_remote_is_skipped() -> None:
    paths = [f"tiny-llama/arc/{'9' * 5000}/manifest.yaml", "tiny-llama/arc/2/manifest.yaml"]
    assert catalog_from_files(paths) == {"tiny-llama": {"arc": [2]}}


def _disk_full(*args: object, **kwargs: object) -> None:
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_compose_on_a_full_disk_is_one_line_and_leaves_the_registry_whole(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("safetensors.torch.save_file", _disk_full)
    one_line(t2("compose", "arc=0.5", "-o", "mix", "--registry", str(registry.root)), 1, "no space left on the disk")
    assert registry.catalog() == {"tiny-llama": {"arc": [1]}}
    assert not list(registry.root.glob("*/*/.staging-*")) and registry.verify() == []


def test_pull_on_a_full_disk_is_one_line_and_leaves_the_registry_whole(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = Registry(tmp_path / "local")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("t2cli.experts.registry.copy_verified", full)
    outcome = t2("registry", "pull", f"file://{registry.root}", "arc", "--registry", str(local.root))
    one_line(outcome, 1, f"no space left on the disk holding {local.root}")
    assert local.catalog() == {} and not list(local.root.glob("*/*/.staging-*"))


@pytest.mark.parametrize("garbage", ["02", "2 ", "two", "2\udcff"])
def test_verify_reports_a_version_folder_named_with_garbage(registry: Registry, garbage: str) -> None:
    stray = registry.root / "tiny-llama" / "arc" / garbage
    stray.mkdir()
    problems = registry.verify()
    assert [p.where for p in problems] == [f"tiny-llama/arc/{garbage}"]
    assert "not a version folder" in problems[0].message
    assert [p.where for p in registry.verify("arc")] == [f"tiny-llama/arc/{garbage}"]


def test_verify_reports_what_publishing_cannot_read(registry: Registry) -> None:
    (registry.root / "tiny-llama" / "arc" / LAST_VERSION_FILE).write_text("garbage\n")
    problems = registry.verify()
    assert [p.where for p in problems] == ["tiny-llama/arc"] and "not a version number" in problems[0].message
    outcome = t2("compose", "arc=0.5", "-o", "arc", "--registry", str(registry.root))
    assert outcome[0] == 4 and "not a version number" in outcome[2]  # what compose refuses, verify reported
