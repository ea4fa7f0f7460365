"""One expert's folder of versions on disk: its lock, the highest version ever issued, staged commits,
removal, stale staging folders, and what a reader or writer would trip on in the layout.

Every write to an expert holds its lock (`<expert>/.lock`, an OS lock the kernel drops when its
holder dies) and stages its files in a `.staging-*` folder beside the versions; whoever holds the
lock knows any staging folder it finds is stale and deletes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from t2cli.errors import IntegrityError, T2Error
from t2cli.experts.manifest_fields import VERSION_PATTERN
from t2cli.fsutil import atomic_write, default_permissions, disk_errors, read_text_bounded

LOCK_FILE = ".lock"
# Highest version ever issued for an expert, so a removed name@3 is never issued again.
LAST_VERSION_FILE = ".last-version"
STAGING_PREFIX = ".staging-"
LOCK_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Problem:
    """A version that fails verification."""

    where: str
    message: str


@contextmanager
def expert_lock(folder: Path, label: str) -> Iterator[Path]:
    """Hold one expert's lock; yield its folder with stale staging folders removed."""
    from filelock import FileLock, Timeout

    timeout = LOCK_TIMEOUT_S  # read at call time, so a test can shorten it
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(folder / LOCK_FILE, timeout=timeout):
            # Whoever staged these held this lock and is gone, or it would still hold it.
            for stale in folder.glob(f"{STAGING_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)
            yield folder
    except Timeout:
        raise T2Error(
            f"expert {label} has been locked by another t2 process for {timeout:.0f} s; retry later"
        ) from None


def last_version(folder: Path) -> int:
    """The version `.last-version` records as issued (0 without the file)."""
    path = folder / LAST_VERSION_FILE
    if not path.exists():
        return 0
    try:
        return int(read_text_bounded(path, 64, what="a version number", error=IntegrityError).strip())
    except ValueError:
        raise IntegrityError(f"{path} is not a version number; write the highest version ever published") from None


def issued_version(folder: Path) -> int:
    """The highest version number ever issued in an expert's folder (0 for none): present or removed."""
    if not folder.is_dir():
        return 0
    present = [int(p.name) for p in folder.iterdir() if p.is_dir() and VERSION_PATTERN.fullmatch(p.name)]
    return max([*present, last_version(folder)])


def commit_version(
    folder: Path, version: int, write: Callable[[Path], None], *, verify: Callable[[Path], object]
) -> Path:
    """Stage a version with `write`, `verify` it (load it: raise if it does not hold), and rename it into
    place (caller holds the lock)."""
    target = folder / str(version)
    if target.exists():
        raise IntegrityError(f"{target} already exists; versions are immutable")
    with disk_errors(folder, f"{folder.name}@{version}"):  # a full disk: one line, and nothing half-written
        stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        try:
            write(stage)
            verify(stage)  # a version must verify before anyone can see it
            default_permissions(stage)  # mkdtemp's 0700 and safetensors' 0600 would hide it from other users
            os.rename(stage, target)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return target


def retire_version(folder: Path, version: int) -> None:
    """Delete one version folder and record its number as issued (caller holds the lock)."""
    atomic_write(folder / LAST_VERSION_FILE, f"{max(version, last_version(folder))}\n".encode())
    # Move it out of sight in one rename first: a crash during the delete leaves a stale
    # staging folder, never a half-deleted version.
    trash = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    os.rename(folder / str(version), trash / "removed")
    shutil.rmtree(trash)


def sweep_staging(root: Path) -> int:
    """Delete stale staging folders left by killed writers under a registry root; returns how many.

    Experts whose lock is held right now are skipped: their staging folder may be live.
    """
    from filelock import FileLock, Timeout

    removed = 0
    if not root.is_dir():
        return removed
    for folder in root.glob(f"*/*/{STAGING_PREFIX}*"):
        expert = folder.parent
        try:
            with FileLock(expert / LOCK_FILE, timeout=0):
                if folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
        except Timeout:
            continue
    return removed


def layout_problems(root: Path, model_slug: str | None) -> list[Problem]:
    """What listings skip but a reader or writer would trip on: files where folders go, folders named
    like no version, a `.last-version` that publishing cannot read."""
    problems = []
    for slug_dir in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if model_slug is not None and slug_dir.name != model_slug:
            continue
        if not slug_dir.is_dir():
            problems.append(Problem(slug_dir.name, "a file where model folders go; remove it"))
            continue
        for expert_dir in sorted(p for p in slug_dir.iterdir() if not p.name.startswith(".")):
            if not expert_dir.is_dir():
                problems.append(Problem(f"{slug_dir.name}/{expert_dir.name}", "a file where expert folders go"))
                continue
            problems += folder_problems(expert_dir)
    return problems


def folder_problems(folder: Path) -> list[Problem]:
    """An expert folder's unreadable `.last-version` and entries that are no version folder."""
    where = f"{folder.parent.name}/{folder.name}"
    problems = []
    try:
        last_version(folder)
    except T2Error as error:
        problems.append(Problem(where, f"{error}; publishing and composing to it fail until then"))
    for entry in sorted(folder.iterdir()):
        if not entry.name.startswith(".") and not (entry.is_dir() and VERSION_PATTERN.fullmatch(entry.name)):
            problems.append(
                Problem(
                    f"{where}/{entry.name}",
                    "not a version folder (versions are folders named 1, 2, 3...), so t2 never loads it; "
                    "remove or rename it",
                )
            )
    return problems
