"""Pulling from a file:// remote whose files are hostile: links, FIFOs, folders, endless or stray files."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2cli.errors import IntegrityError
from t2cli.experts.manifest_fields import MANIFEST_FILE, Z_FILE
from t2cli.experts.registry import Registry
from t2cli.experts.remotes import pull
from t2cli.experts.versions import STAGING_PREFIX
from tests.helpers import make_expert


@pytest.fixture
def local(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "local")


def _remote_with_z(tmp_path: Path, make_z) -> str:
    """A file:// remote whose arc@1 has its z.safetensors replaced by `make_z(path)`."""
    remote = Registry(tmp_path / "remote")
    ref = remote.publish(make_expert())
    (ref.path / Z_FILE).unlink()
    make_z(ref.path / Z_FILE)
    return f"file://{remote.root}"


def _huge_sparse(path: Path) -> None:
    with path.open("wb") as handle:
        handle.truncate(1 << 40)  # a terabyte of holes: reading it all would never finish


@pytest.mark.parametrize(
    ("make_z", "message"),
    [
        (lambda path: path.symlink_to("/dev/zero"), "z.safetensors is a symbolic link"),
        (lambda path: __import__("os").mkfifo(path), "z.safetensors is not a regular file"),
        (lambda path: path.mkdir(), "z.safetensors is a folder"),
        (_huge_sparse, r"checksum mismatch on z.safetensors \(more bytes than"),
    ],
)
def test_file_pull_refuses_links_special_files_and_oversized_files(
    local: Registry, tmp_path: Path, make_z, message: str
) -> None:
    url = _remote_with_z(tmp_path, make_z)
    with pytest.raises(IntegrityError, match=message):
        pull(local, url, "arc")
    assert local.catalog() == {}
    assert not list(local.root.rglob(f"{STAGING_PREFIX}*"))


def test_file_pull_copies_no_stray_files(local: Registry, tmp_path: Path) -> None:
    remote = Registry(tmp_path / "remote")
    ref = remote.publish(make_expert())
    (ref.path / ".stray").write_text("x")
    pulled = pull(local, f"file://{remote.root}", "arc")
    assert sorted(p.name for p in Path(pulled.local).iterdir()) == [MANIFEST_FILE, Z_FILE]
