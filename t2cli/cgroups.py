"""Memory cgroups for the sandbox: a cgroup per run capping its total memory, where this process may make one."""

from __future__ import annotations

import os
import time
from pathlib import Path


def memory_cgroup_parent() -> Path | None:
    """A writable cgroup folder with the memory controller for per-run cgroups: cgroup v2 (the memory
    controller enabled for this process's cgroup's children), else the cgroup v1 memory hierarchy."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        candidates = []
        if controllers == "":
            candidates = [Path("/sys/fs/cgroup") / path.lstrip("/"), Path("/sys/fs/cgroup/unified") / path.lstrip("/")]
        elif "memory" in controllers.split(","):
            candidates = [Path("/sys/fs/cgroup/memory") / path.lstrip("/")]
        for folder in candidates:
            v2 = (folder / "cgroup.subtree_control").is_file()
            if v2 and "memory" not in (folder / "cgroup.subtree_control").read_text().split():
                continue
            if (folder / "cgroup.procs").is_file() and os.access(folder, os.W_OK):
                return folder
    return None


def make_memory_cgroup(parent: Path | None, name: str, memory_mb: int) -> str | None:
    """A cgroup capping the run's total memory (no swap), or None where none can be made."""
    if parent is None:
        return None
    folder = parent / name
    limits = (
        {"memory.max": memory_mb << 20, "memory.swap.max": 0}
        if (parent / "cgroup.subtree_control").is_file()
        else {"memory.limit_in_bytes": memory_mb << 20, "memory.memsw.limit_in_bytes": memory_mb << 20}
    )
    try:
        folder.mkdir()
        for file, value in limits.items():
            if (folder / file).exists():
                (folder / file).write_text(str(value))
    except OSError:
        remove_cgroup(str(folder))
        return None
    return str(folder)


def remove_cgroup(folder: str | None) -> None:
    """Remove a cgroup made by make_memory_cgroup once its processes are gone (no-op for None)."""
    if folder is not None:
        for _ in range(50):  # the kernel may take a moment to release the last reaped process
            try:
                os.rmdir(folder)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)
