"""Failures of the machine rather than of t2 (a read-only T2_HOME, a full disk) are one line, not a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.fsutil import disk_errors, staged_folder, write_error
from tests.helpers import make_model_folder


@pytest.fixture
def read_only_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """T2_HOME on a read-only file system (a tmpfs mounted ro: root can write past file modes, not past EROFS)."""
    home = tmp_path / "home"
    home.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "t2ro", str(home)]).returncode:
        pytest.skip("mounting a read-only file system needs root")
    monkeypatch.setenv("T2_HOME", str(home))
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def t2(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_svd_cache_in_a_read_only_home_is_one_line(read_only_home: Path, tmp_path: Path) -> None:
    model = make_model_folder(tmp_path / "tiny")
    code, _, err = t2("decompose", str(model))
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "read-only file system" in err and str(read_only_home) in err


def test_model_conversion_in_a_read_only_home_is_one_line(
    read_only_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def convert(builtin: object, folder: Path) -> None:  # the write of the real conversion, without the GGUF
        with staged_folder(folder) as staging:
            (staging / "model.safetensors").write_bytes(b"")

    monkeypatch.setattr("t2cli.models.builtin._convert_gguf", convert)
    code, _, err = t2("decompose", "smollm2-135m")
    assert code == 1 and err.count("\n") == 1 and "cannot write the converted smollm2-135m" in err, err
    assert "read-only file system" in err


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.ENOSPC, "no space left on the disk holding /d"),
        (errno.EDQUOT, "disk quota exceeded on /d"),
        (errno.EROFS, "/d is on a read-only file system"),
        (errno.EACCES, "permission denied on /d"),
    ],
)
def test_machine_errors_name_the_folder_and_the_fix(code: int, text: str) -> None:
    error = write_error(OSError(code, os.strerror(code), "/d"))
    assert error is not None and text in str(error) and "T2_HOME" in str(error)
    assert write_error(OSError(errno.ENOENT, "missing", "/d")) is None  # t2's own errors stay its own
    with pytest.raises(OSError), disk_errors(Path("/d"), "x"):
        raise FileNotFoundError(errno.ENOENT, "missing")
