"""`t2 export -o` against links, races and the registry itself; exports and versions get ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.errors import T2Error
from t2cli.experts.formats.base import staged
from t2cli.experts.registry import Registry
from tests.helpers import make_expert


@pytest.fixture
def registry(tmp_path: Path, t2_home: Path) -> Registry:
    store = Registry(tmp_path / "registry")
    store.publish(make_expert("arc", seed=0))
    return store


def export(registry: Registry, output: Path) -> tuple[int, str, str]:
    args = ["export", "arc", "-f", "merged", "-o", str(output), "--registry", str(registry.root)]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


def no_model(*args: object, **kwargs: object) -> None:
    pytest.fail("loaded a model")


@pytest.mark.parametrize("target", ["empty-folder", "missing"])
def test_a_symlink_as_output_is_refused_before_the_model_loads(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    monkeypatch.setattr("t2cli.models.loading.load_model", no_model)
    if target == "empty-folder":
        (tmp_path / target).mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / target)
    code, out, err = export(registry, link)
    assert (code, out) == (2, "") and err.count("\n") == 1 and "is a symbolic link" in err
    assert link.is_symlink()


def test_an_output_inside_the_registry_is_refused(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("t2cli.models.loading.load_model", no_model)
    fake = registry.root / "tiny-llama" / "arc" / "7"
    code, out, err = export(registry, fake)
    assert (code, out) == (2, "") and "inside the registry" in err
    assert not fake.exists() and registry.verify() == []


def test_the_loser_of_two_exports_to_one_folder_fails_in_one_line(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with pytest.raises(T2Error, match="written by another process"), staged(output) as folder:
        (folder / "mine").write_text("loser")
        output.mkdir()  # the other export finishes first
        (output / "theirs").write_text("winner")
    assert [p.name for p in output.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def _modes(folder: Path) -> set[int]:
    return {stat.S_IMODE(path.stat().st_mode) for path in [folder, *folder.iterdir()]}


def test_exports_and_versions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with staged(tmp_path / "export") as folder:
            fd = os.open(folder / "adapter_model.safetensors", os.O_CREAT | os.O_WRONLY, 0o600)  # as safetensors does
            os.close(fd)
        ref = Registry(tmp_path / "registry").publish(make_expert("arc", seed=0))
    finally:
        os.umask(old)
    assert _modes(tmp_path / "export") == {0o755, 0o644}
    assert _modes(ref.path) == {0o755, 0o644}
