"""The shared file-system helpers: atomic files keep normal permissions; staged folders appear whole or not at all."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
from pathlib import Path

import pytest

from t2cli import fsutil
from t2cli.errors import BadInputError
from t2cli.fsutil import atomic_write, open_text_lines, staged_folder
from t2cli.rmtree import remove_tree


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "plot.png", b"data")
        (tmp_path / "plain").write_bytes(b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plot.png").stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "plot.png").stat().st_mode) == 0o644


def test_staged_folder_appears_whole_and_a_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-way")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(target) as staging:
        (staging / "weights").write_bytes(b"1")
        assert not target.exists()
    assert [p.name for p in target.iterdir()] == ["weights"]


def test_staged_folder_keeps_the_first_finished_copy_unless_told_to_replace(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "old").write_bytes(b"0")
    with staged_folder(target) as staging:
        (staging / "new").write_bytes(b"1")
    assert [p.name for p in target.iterdir()] == ["old"]
    with staged_folder(target, replace=True) as staging:
        (staging / "new").write_bytes(b"1")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no staging folder left behind


def test_remove_tree_deletes_any_depth_locked_folders_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    tree = tmp_path / "tree"
    tree.mkdir()
    try:
        parent = os.open(tree, os.O_RDONLY)
        for _ in range(2100):  # shutil.rmtree: RecursionError, and paths past PATH_MAX (4096)
            os.mkdir("d", dir_fd=parent)
            os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=parent))
            child = os.open("d", os.O_RDONLY, dir_fd=parent)
            os.close(parent)
            parent = child
        os.close(parent)
        (tree / "link").symlink_to(outside, target_is_directory=True)
        os.chmod(tree / "d" / "d", 0)
        remove_tree(tree)
        assert not tree.exists()
        assert (outside / "keep").read_text() == "keep"
        remove_tree(tree)  # gone already: a no-op
    finally:  # pytest's own cleanup (shutil.rmtree) cannot delete such a tree
        subprocess.run(["rm", "-rf", str(tree)], check=False)


def _gz(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as handle:
        handle.write(data)
    return path


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (b"\n" * 5000, {"MAX_TEXT_LINES": 1000}),  # blank lines: minutes of readline before the cap
        (b'{"prompt": "x"}\n' * 5000, {"MAX_TEXT_LINES": 1000}),  # short lines: gigabytes of records
        (b"y" * 900 + b"\n" + b"z" * 900 + b"\n", {"MAX_TEXT_BYTES": 1000}),
    ],
)
def test_a_gzip_bomb_stops_at_the_line_and_size_caps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, limits: dict[str, int]
) -> None:
    for name, value in limits.items():
        monkeypatch.setattr(fsutil, name, value)
    path = _gz(tmp_path / "bomb.jsonl.gz", data)
    with pytest.raises(BadInputError, match="t2's limit for one input file"), open_text_lines(path) as lines:
        for _ in lines:
            pass


@pytest.mark.parametrize("data", [b"not gzip", b"\x1f\x8b\x08\x00" + b"\x00" * 20, b"\x1f\x8b"])
def test_a_corrupt_or_truncated_gzip_is_bad_input(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.jsonl.gz"
    valid = gzip.compress(b'{"prompt": "hi"}\n' * 100)
    for content in (data, valid[: len(valid) // 2], valid[:-6] + b"\x00" * 6):
        path.write_bytes(content)
        with pytest.raises(BadInputError, match="cannot read"), open_text_lines(path) as lines:
            list(lines)
