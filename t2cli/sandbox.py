"""Run untrusted generated Python (code-task rewards) in a contained child process.

Every run gets a private temp dir (cwd, HOME and TMPDIR; deleted afterwards however deep the program
nested folders in it), a minimal environment
(PATH, LANG, HOME, TMPDIR), closed stdin and `python -I -S` (isolated mode, standard library only).
A small supervisor process (`t2cli.sandbox_runner.RUNNER`) forks the program and enforces, on Linux:

- always: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NPROC, no core files, no_new_privs
  (setuid binaries gain nothing), and a wall-clock deadline after which the program's process group
  is SIGKILLed; every leftover descendant is reaped (the supervisor is a child subreaper, so orphans
  are reaped even where PID 1 does not reap).
- when t2 runs as root: the program runs under a fresh unprivileged uid/gid of its own (derived from
  its temp dir's inode, unique among live runs), so RLIMIT_NPROC applies and counts only this run,
  files outside the temp dir are protected by ordinary permissions, and at the end every process of
  that uid is killed, including ones that left the process group with setsid(). It also gets a new,
  empty network namespace (no interface up: no network at all) where the kernel allows one, else the
  audit hook below; and a mount namespace of its own with fresh tmpfs on /tmp, /var/tmp and /dev/shm
  (each capped at max_file_mb) and on its working folder (capped at max_disk_mb in all, holding a copy
  of the program), each at most MAX_FOLDER_ENTRIES files and folders, never on the host's disk and gone
  with the run. If the standard library lies below a folder other
  users cannot enter (pyenv under a 0700 /root), its folders are bind-mounted read-only into the
  private /tmp (`..` from there stays in /tmp), so nothing else there becomes readable; without a
  mount namespace such a run fails with status "error".
- where a writable memory cgroup exists (v2 with the memory controller delegated, or v1's memory
  hierarchy): memory_mb caps the whole run, every process together, swap included; elsewhere only
  each process's address space is capped, so N processes may use up to N x memory_mb.
- the runner reports its own failures (status "error") through a pipe that the program never
  holds, so no output or exit code of the program can pass for one.
- without root: RLIMIT_NPROC is set to the user's current task count plus the allowance, and the
  program keeps the user's uid, so it can touch the user's own files, its working folder is on the host's
  disk with no cap on its total size (only each file's, max_file_mb), and a process that calls
  setsid() can outlive the run. Network is refused by an audit hook on socket events (best effort:
  ctypes or a spawned binary bypass it). Run RL code rewards as root in a container or VM for real
  containment.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from t2cli.cgroups import make_memory_cgroup, memory_cgroup_parent, remove_cgroup
from t2cli.errors import BadInputError
from t2cli.rmtree import remove_tree
from t2cli.sandbox_runner import RUNNER

OUTPUT_LIMIT_CHARS = 4000
# Files and folders a run's working folder and private /tmp, /var/tmp, /dev/shm may each hold (tmpfs inodes).
MAX_FOLDER_ENTRIES = 10_000
SETUP_FAILED = 120  # exit code of the runner when confinement could not be set up
TIMED_OUT = 124  # exit code of the runner when the wall-clock deadline passed (as coreutils timeout)
# The parent only steps in when the supervisor itself hangs, so its deadline is generous.
_BACKSTOP_S = 5.0
# Sandbox uids sit far above ordinary and container-mapped uid ranges.
_UID_BASE = 1_000_000_000
_UID_SPAN = 1_000_000_000


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one run. status: passed | failed | timeout | error (the sandbox itself failed)."""

    passed: bool
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float


@dataclass(frozen=True)
class SandboxPolicy:
    """What this process can enforce (see the module docstring)."""

    drops_privileges: bool
    stdlib_by_mount: bool
    # Where each run's memory cgroup is made (None: no writable cgroup, so memory is capped per process).
    cgroup_parent: Path | None = None


def sandbox_policy() -> SandboxPolicy:
    if os.geteuid() != 0:
        return SandboxPolicy(drops_privileges=False, stdlib_by_mount=False)
    return SandboxPolicy(True, not _stdlib_readable_by_others(), memory_cgroup_parent())


def run_python(
    program: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_processes: int = 32,
    max_file_mb: int = 16,
    max_disk_mb: int = 64,
) -> SandboxResult:
    """Run `program` as a script in the sandbox; it passes when it exits with status 0."""
    _check_limits(timeout_s, memory_mb, max_processes, max_file_mb, max_disk_mb)
    policy = sandbox_policy()
    with _working_folder() as workdir:
        (workdir / "program.py").write_text(program, encoding="utf-8")
        uid = None
        if policy.drops_privileges:
            uid = _UID_BASE + workdir.stat().st_ino % _UID_SPAN
            os.chown(workdir, uid, uid)
        status_read, status_write = os.pipe()  # the runner's own failures; the program never holds it
        cgroup = make_memory_cgroup(policy.cgroup_parent, workdir.name, memory_mb)
        # Positional values, parsed without json: importing json (and re) would add ~7 ms to every run.
        config = [
            -1 if uid is None else uid,
            int(policy.stdlib_by_mount),
            timeout_s,
            max(1, math.ceil(timeout_s)),
            memory_mb * 2**20,
            max_file_mb * 2**20,
            max_processes,
            SETUP_FAILED,
            TIMED_OUT,
            status_write,
            max_file_mb * 2**20,  # each private /tmp, /var/tmp, /dev/shm
            cgroup or "-",
            max_disk_mb * 2**20,  # the working folder, all files together
            MAX_FOLDER_ENTRIES,
        ]
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
        }
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            try:
                returncode = _supervise(
                    [sys.executable, "-I", "-S", "-c", RUNNER, *map(str, config)],
                    workdir,
                    env,
                    (out, err, status_write),
                    backstop_s=timeout_s + _BACKSTOP_S,
                )
            except OSError as error:  # no process could be started (fork limits, a missing interpreter)
                message = f"t2-sandbox: cannot start {sys.executable}: {error}"
                return SandboxResult(False, "error", None, "", message, time.perf_counter() - started)
            finally:
                failure = _read_status(status_read)
                remove_cgroup(cgroup)
            duration = time.perf_counter() - started
            stdout, stderr = _head(out), _tail(err)
    if failure:
        return SandboxResult(False, "error", returncode, stdout, f"t2-sandbox: {failure}", duration)
    status = _status(returncode)
    return SandboxResult(status == "passed", status, returncode, stdout, stderr, duration)


def run_many(
    programs: Sequence[str],
    *,
    workers: int | None = None,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_processes: int = 32,
    max_file_mb: int = 16,
    max_disk_mb: int = 64,
) -> list[SandboxResult]:
    """Run programs in parallel (threads driving sandbox processes); results keep the input order."""
    _check_limits(timeout_s, memory_mb, max_processes, max_file_mb, max_disk_mb)
    if workers is not None and workers < 1:
        raise BadInputError(f"sandbox workers must be >= 1, got {workers}; pass a positive worker count")
    if not programs:
        return []

    def run(program: str) -> SandboxResult:
        return run_python(
            program,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_processes=max_processes,
            max_file_mb=max_file_mb,
            max_disk_mb=max_disk_mb,
        )

    with ThreadPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, len(programs))) as pool:
        return list(pool.map(run, programs))


@contextlib.contextmanager
def _working_folder() -> Iterator[Path]:
    """A fresh temp folder for one run, deleted afterwards however deep or locked-down the program left it
    (shutil.rmtree, and so TemporaryDirectory, raise RecursionError on 5,000 nested folders)."""
    workdir = Path(tempfile.mkdtemp(prefix="t2-sandbox-"))
    try:
        yield workdir
    finally:
        with contextlib.suppress(OSError):  # only a process that outlived the run (no root) can cause this
            remove_tree(workdir)


def _check_limits(timeout_s: float, memory_mb: int, max_processes: int, max_file_mb: int, max_disk_mb: int) -> None:
    for label, value in (
        ("timeout_s", timeout_s),
        ("memory_mb", memory_mb),
        ("max_processes", max_processes),
        ("max_file_mb", max_file_mb),
        ("max_disk_mb", max_disk_mb),
    ):
        if not value > 0:
            raise BadInputError(f"sandbox {label} must be > 0, got {value}; pass a positive value")


def _supervise(
    command: list[str], workdir: Path, env: dict[str, str], streams: tuple[IO[bytes], IO[bytes], int], backstop_s: float
) -> int:
    out, err, status = streams
    try:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=(status,),
            start_new_session=True,
        )
    finally:  # closed exactly once: other threads' files may reuse the number at once
        os.close(status)  # only the runner (and the child, until the program starts) may write it
    exited = False
    try:
        exited = _wait_for_exit(proc, backstop_s)
    finally:
        if not exited:  # the runner is alive (unreaped), so its group id is still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return TIMED_OUT if not exited else proc.returncode


def _wait_for_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """True when the process exits within timeout_s; a pidfd wakes us at once, unlike Popen.wait polling."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # kernels or seccomp profiles without pidfd_open
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
    finally:
        os.close(pidfd)
    return bool(ready)


def _read_status(read_end: int) -> str:
    """What the runner reported about its own failure ('' when none), from the pipe the program cannot write."""
    os.set_blocking(read_end, False)
    try:
        return os.read(read_end, 4096).decode("utf-8", errors="replace")
    except BlockingIOError:  # a child stuck in set-up still holds the write end
        return ""
    finally:
        os.close(read_end)


def _status(returncode: int) -> str:
    if returncode == 0:
        return "passed"
    if returncode in (TIMED_OUT, 128 + signal.SIGXCPU):
        return "timeout"
    return "failed"


def _head(stream: IO[bytes]) -> str:
    stream.seek(0)
    data = stream.read(OUTPUT_LIMIT_CHARS * 4 + 1).decode("utf-8", errors="replace")
    return data if len(data) <= OUTPUT_LIMIT_CHARS else data[:OUTPUT_LIMIT_CHARS] + "\n...[truncated]"


def _tail(stream: IO[bytes]) -> str:
    """The end of stderr, where a traceback's exception line is."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - OUTPUT_LIMIT_CHARS * 4))
    data = stream.read().decode("utf-8", errors="replace")
    return data if len(data) <= OUTPUT_LIMIT_CHARS else "[truncated]...\n" + data[-OUTPUT_LIMIT_CHARS:]


def _stdlib_readable_by_others() -> bool:
    """Whether an unprivileged uid can import the standard library (false for pyenv under /root)."""
    paths = sysconfig.get_paths()
    for directory in {Path(paths["stdlib"]), Path(paths["platstdlib"])}:
        for part in (directory, *directory.parents):
            try:
                mode = part.stat().st_mode
            except OSError:
                return False
            if not mode & stat.S_IXOTH:
                return False
        if not directory.stat().st_mode & stat.S_IROTH:
            return False
    return True
