"""Run untrusted generated Python (code-task rewards) in a contained child process.

Every run gets a private temp dir (cwd, HOME and TMPDIR; deleted afterwards), a minimal environment
(PATH, LANG, HOME, TMPDIR), closed stdin and `python -I -S` (isolated mode, standard library only).
A small supervisor process (`_RUNNER`) forks the program and enforces, on Linux:

- always: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NPROC, no core files, no_new_privs
  (setuid binaries gain nothing), and a wall-clock deadline after which the program's process group
  is SIGKILLed; every leftover descendant is reaped (the supervisor is a child subreaper, so orphans
  are reaped even where PID 1 does not reap).
- when t2 runs as root: the program runs under a fresh unprivileged uid/gid of its own (derived from
  its temp dir's inode, unique among live runs), so RLIMIT_NPROC applies and counts only this run,
  files outside the temp dir are protected by ordinary permissions, and at the end every process of
  that uid is killed, including ones that left the process group with setsid(). It also gets a new,
  empty network namespace (no interface up: no network at all) where the kernel allows one; else the
  audit hook below. If the standard library lies below a folder other users cannot enter (pyenv under
  a 0700 /root), it is imported through directory fds opened before the uid switch, so the program
  still cannot read anything else there.
- without root: RLIMIT_NPROC is set to the user's current task count plus the allowance, and the
  program keeps the user's uid, so it can touch the user's own files, and a process that calls
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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from t2cli.errors import BadInputError

OUTPUT_LIMIT_CHARS = 4000
SETUP_FAILED = 120  # exit code of the runner when confinement could not be set up
TIMED_OUT = 124  # exit code of the runner when the wall-clock deadline passed (as coreutils timeout)
# The parent only steps in when the supervisor itself hangs, so its deadline is generous.
_BACKSTOP_S = 5.0
# Sandbox uids sit far above ordinary and container-mapped uid ranges.
_UID_BASE = 1_000_000_000
_UID_SPAN = 1_000_000_000

# The supervisor and confinement, run as `python -I -S -c _RUNNER ARGS...` in the temp dir. It is a
# string (not a module) and imports only cheap C-backed modules, so the child interpreter starts in
# ~15 ms: importing t2cli or site-packages would add ~40 ms to every run.
_RUNNER = r"""
import ctypes, os, resource, select, sys, time

UID, STDLIB_BY_FD, TIMEOUT, CPU, MEMORY, FSIZE, NPROC, SETUP_FAILED, TIMED_OUT = (
    int(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3]), *map(int, sys.argv[4:10]))
LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET, SIGKILL = 0x40000000, 9
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38


def prctl(option, value):
    if LIBC.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(%d) failed" % option)


def reach_stdlib_by_fd():
    # The stdlib sits below a folder other users cannot enter (pyenv under a 0700 /root): open its
    # folders while still root and import through /proc/self/fd, which skips the ancestors' permissions.
    for position, entry in enumerate(sys.path):
        if os.path.isdir(entry):
            sys.path[position] = "/proc/self/fd/%d" % os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
    sys.path_importer_cache.clear()


def tasks_of_this_user():
    # RLIMIT_NPROC counts every task (thread) of the real uid, so the allowance is added to these.
    me, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat("/proc/" + name).st_uid == me:
                    count += len(os.listdir("/proc/%s/task" % name))
            except OSError:
                pass
    return count


def deny_network(event, args):
    if event.startswith("socket."):
        raise PermissionError("network access is disabled in the t2 sandbox")


def confine():
    own_network = False
    if UID < 0:
        nproc = tasks_of_this_user() + NPROC
    else:
        own_network = LIBC.unshare(CLONE_NEWNET) == 0
        if STDLIB_BY_FD:
            reach_stdlib_by_fd()
        os.setgroups([])
        os.setgid(UID)
        os.setuid(UID)
        nproc = NPROC
    for limit, value in ((resource.RLIMIT_AS, MEMORY), (resource.RLIMIT_FSIZE, FSIZE),
                         (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU, CPU + 1))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_PDEATHSIG, SIGKILL)  # after setuid, which clears it
    if not own_network:
        sys.addaudithook(deny_network)


def kill_everything_of(uid):
    # kill(-1) from a process of that uid reaches exactly that uid's processes, atomically with fork.
    helper = os.fork()
    if helper == 0:
        try:
            os.setuid(uid)
            if os.getuid() == uid and os.geteuid() == uid and uid != 0:
                os.kill(-1, SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def exited_within(child, timeout):
    # Waiting with WNOWAIT keeps the child a zombie, so its process-group id cannot be recycled
    # before the killpg below.
    try:
        pidfd = os.pidfd_open(child)
    except OSError:  # no pidfd_open here: poll
        deadline = time.monotonic() + timeout
        while os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


def supervise(child):
    info = os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT) if exited_within(child, TIMEOUT) else None
    try:
        os.killpg(child, SIGKILL)
    except ProcessLookupError:
        pass
    if UID >= 0:
        kill_everything_of(UID)
    flags = 0 if UID >= 0 else os.WNOHANG  # without root, setsid() escapees may live on
    while True:  # reap the child and every orphan adopted as subreaper
        try:
            if os.waitpid(-1, flags) == (0, 0):
                break
        except ChildProcessError:
            break
    if info is None:
        return TIMED_OUT
    return info.si_status if info.si_code == os.CLD_EXITED else 128 + info.si_status


try:
    with open("program.py", encoding="utf-8") as handle:
        SOURCE = handle.read()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    CHILD = os.fork()
except BaseException as error:
    os.write(2, ("t2-sandbox: cannot start: %r\n" % (error,)).encode())
    os._exit(SETUP_FAILED)
if CHILD == 0:
    try:
        os.setpgid(0, 0)
        confine()
        CODE = compile(SOURCE, "program.py", "exec")
    except SyntaxError:
        raise
    except BaseException as error:
        os.write(2, ("t2-sandbox: setup failed: %r\n" % (error,)).encode())
        os._exit(SETUP_FAILED)
    sys.argv = ["program.py"]
    exec(CODE, {"__name__": "__main__", "__file__": "program.py", "__builtins__": __builtins__})
    sys.exit(0)
try:
    os.setpgid(CHILD, CHILD)
except OSError:
    pass  # the child already did it, or is already gone
os._exit(supervise(CHILD))
"""


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
    stdlib_by_fd: bool


def sandbox_policy() -> SandboxPolicy:
    if os.geteuid() != 0:
        return SandboxPolicy(drops_privileges=False, stdlib_by_fd=False)
    return SandboxPolicy(drops_privileges=True, stdlib_by_fd=not _stdlib_readable_by_others())


def run_python(
    program: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_processes: int = 32,
    max_file_mb: int = 16,
) -> SandboxResult:
    """Run `program` as a script in the sandbox; it passes when it exits with status 0."""
    _check_limits(timeout_s, memory_mb, max_processes, max_file_mb)
    policy = sandbox_policy()
    with tempfile.TemporaryDirectory(prefix="t2-sandbox-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        (workdir / "program.py").write_text(program, encoding="utf-8")
        uid = None
        if policy.drops_privileges:
            uid = _UID_BASE + workdir.stat().st_ino % _UID_SPAN
            os.chown(workdir, uid, uid)
        # Positional numbers, parsed without json: importing json (and re) would add ~7 ms to every run.
        config = [
            -1 if uid is None else uid,
            int(policy.stdlib_by_fd),
            timeout_s,
            max(1, math.ceil(timeout_s)),
            memory_mb * 2**20,
            max_file_mb * 2**20,
            max_processes,
            SETUP_FAILED,
            TIMED_OUT,
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
                    [sys.executable, "-I", "-S", "-c", _RUNNER, *map(str, config)],
                    workdir,
                    env,
                    out,
                    err,
                    backstop_s=timeout_s + _BACKSTOP_S,
                )
            except OSError as error:  # no process could be started (fork limits, a missing interpreter)
                message = f"t2-sandbox: cannot start {sys.executable}: {error}"
                return SandboxResult(False, "error", None, "", message, time.perf_counter() - started)
            duration = time.perf_counter() - started
            stdout, stderr = _head(out), _tail(err)
    status = _status(returncode, stderr)
    return SandboxResult(status == "passed", status, returncode, stdout, stderr, duration)


def run_many(
    programs: Sequence[str],
    *,
    workers: int | None = None,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_processes: int = 32,
    max_file_mb: int = 16,
) -> list[SandboxResult]:
    """Run programs in parallel (threads driving sandbox processes); results keep the input order."""
    _check_limits(timeout_s, memory_mb, max_processes, max_file_mb)
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
        )

    with ThreadPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, len(programs))) as pool:
        return list(pool.map(run, programs))


def _check_limits(timeout_s: float, memory_mb: int, max_processes: int, max_file_mb: int) -> None:
    for label, value in (
        ("timeout_s", timeout_s),
        ("memory_mb", memory_mb),
        ("max_processes", max_processes),
        ("max_file_mb", max_file_mb),
    ):
        if not value > 0:
            raise BadInputError(f"sandbox {label} must be > 0, got {value}; pass a positive value")


def _supervise(
    command: list[str], workdir: Path, env: dict[str, str], out: IO[bytes], err: IO[bytes], backstop_s: float
) -> int:
    proc = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
    )
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


def _status(returncode: int, stderr: str) -> str:
    if returncode == 0:
        return "passed"
    if returncode in (TIMED_OUT, 128 + signal.SIGXCPU):
        return "timeout"
    if returncode == SETUP_FAILED and "t2-sandbox: " in stderr:
        return "error"
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
