"""The sandbox contains hostile programs and reports how each run ended; the host keeps working."""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from t2cli.errors import BadInputError
from t2cli.sandbox import OUTPUT_LIMIT_CHARS, run_many, run_python, sandbox_policy

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")
needs_root = pytest.mark.skipif(
    not sandbox_policy().drops_privileges, reason="a separate uid (and so file protection) needs root"
)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_clean_exit_passes_and_stdout_is_captured() -> None:
    result = run_python("print('hello')")
    assert (result.passed, result.status, result.returncode, result.stdout) == (True, "passed", 0, "hello\n")


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("raise ValueError('boom')", "ValueError: boom"),
        ("def broken(:\n    pass", "SyntaxError"),
        ("assert 1 == 2, 'wrong'", "AssertionError: wrong"),
        ("input()", "EOFError"),  # stdin is closed, so reading it cannot hang
    ],
)
def test_failing_programs_fail_with_their_error(program: str, message: str) -> None:
    result = run_python(program)
    assert (result.passed, result.status) == (False, "failed")
    assert message in result.stderr


@pytest.mark.parametrize("program", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_endless_programs_time_out_on_the_wall_clock(program: str) -> None:
    result = run_python(program, timeout_s=1)
    assert result.status == "timeout"
    assert result.duration_s < 4


def test_ten_gigabyte_allocation_fails() -> None:
    # mmap only reserves address space, so this probe is harmless even if the limit were missing.
    probe = run_python("import mmap\nm = mmap.mmap(-1, 10 * 1024 ** 3)\nprint('mapped')", memory_mb=256)
    assert probe.status == "failed" and "mapped" not in probe.stdout
    result = run_python("data = bytearray(10 * 1024 ** 3)", memory_mb=256)
    assert result.status == "failed" and "MemoryError" in result.stderr


def test_process_count_is_capped_and_every_child_is_killed() -> None:
    program = (
        "import os, time\npids = []\ntry:\n    while len(pids) < 100:\n        pid = os.fork()\n"
        "        if pid == 0:\n            time.sleep(60)\n            os._exit(0)\n        pids.append(pid)\n"
        "except OSError:\n    pass\nprint(*pids)\n"
    )
    result = run_python(program, timeout_s=3, max_processes=8)
    pids = [int(pid) for pid in result.stdout.split()]
    assert 0 < len(pids) <= 8
    assert not [pid for pid in pids if _alive(pid)]


def test_fork_bomb_is_contained_and_the_host_survives() -> None:
    started = time.monotonic()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_python(bomb, timeout_s=2, max_processes=8)
    assert result.status == "timeout"
    assert time.monotonic() - started < 10
    assert run_python("print('still here')").stdout == "still here\n"


def test_background_child_dies_when_the_program_ends() -> None:
    program = "import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(60)\n    os._exit(0)\nprint(pid)\n"
    result = run_python(program, timeout_s=3)
    assert result.passed
    assert not _alive(int(result.stdout))


@needs_root
def test_child_that_leaves_the_process_group_is_killed_too() -> None:
    program = (
        "import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n"
        "print(pid)\n"
    )
    result = run_python(program, timeout_s=3)
    assert result.passed
    assert not _alive(int(result.stdout))


def test_network_connection_to_the_host_is_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        result = run_python(program, timeout_s=5)
    assert result.status == "failed"
    assert "connected" not in result.stdout


def test_environment_is_minimal_and_the_temp_dir_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2_SANDBOX_TEST_SECRET", "hunter2")
    result = run_python("import json, os\nprint(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))")
    seen = json.loads(result.stdout)
    assert set(seen["env"]) <= {"PATH", "LANG", "HOME", "TMPDIR", "LC_CTYPE"}
    assert "hunter2" not in result.stdout
    assert seen["env"]["HOME"] == seen["env"]["TMPDIR"] == seen["cwd"]
    assert not Path(seen["cwd"]).exists()


def test_rm_rf_home_only_reaches_the_sandbox_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Point this process's HOME at a throwaway folder, so even a leaked HOME could not reach the real one.
    home = tmp_path / "home"
    home.mkdir()
    canary = home / "canary.txt"
    canary.write_text("keep")
    monkeypatch.setenv("HOME", str(home))
    program = (
        "import os, shutil\nos.system('rm -rf ~')\nshutil.rmtree(os.path.expanduser('~'), ignore_errors=True)\n"
        f"assert os.path.expanduser('~') == {str(home)!r}, 'HOME is not the real home'\n"
    )
    result = run_python(program, timeout_s=5)
    assert result.status == "failed"
    assert canary.read_text() == "keep"


@needs_root
def test_files_outside_the_sandbox_are_out_of_reach(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("keep")
    target = tmp_path / "written.txt"
    in_real_home = Path.home() / f"t2-sandbox-test-{uuid.uuid4().hex}.txt"
    try:
        for attack in (
            f"open({str(target)!r}, 'w').write('x')",
            f"import os\nos.remove({str(canary)!r})",
            f"print(open({str(canary)!r}).read())",  # a folder only root may enter
            f"open({str(in_real_home)!r}, 'w').write('x')",
        ):
            assert run_python(attack).status == "failed", attack
        assert not target.exists()
        assert not in_real_home.exists()
        assert canary.read_text() == "keep"
    finally:
        in_real_home.unlink(missing_ok=True)


def test_output_is_truncated_and_big_files_are_refused() -> None:
    result = run_python("print('x' * 100_000)")
    assert result.passed
    assert OUTPUT_LIMIT_CHARS <= len(result.stdout) < OUTPUT_LIMIT_CHARS + 100
    big = run_python("open('big.bin', 'wb').write(b'0' * (4 * 2 ** 20))", max_file_mb=1)
    assert big.status == "failed"


def test_run_many_keeps_input_order() -> None:
    results = run_many(["print(0)", "raise SystemExit(3)", "print(2)"], workers=2)
    assert [result.status for result in results] == ["passed", "failed", "passed"]
    assert [results[0].stdout, results[1].returncode, results[2].stdout] == ["0\n", 3, "2\n"]
    assert run_many([]) == []


@pytest.mark.parametrize(
    "options",
    [{"timeout_s": 0}, {"memory_mb": -1}, {"max_processes": 0}, {"max_file_mb": 0}, {"max_disk_mb": 0}, {"workers": 0}],
)
def test_bad_limits_are_rejected(options: dict[str, float]) -> None:
    with pytest.raises(BadInputError):
        run_many(["print(1)"], **options)


def test_a_program_cannot_pass_for_a_sandbox_failure() -> None:
    result = run_python("import sys\nsys.stderr.write('t2-sandbox: setup failed: fake\\n')\nsys.exit(120)")
    assert (result.status, result.returncode) == ("failed", 120)


@needs_root
def test_tmp_folders_are_private_capped_and_gone_after_the_run() -> None:
    marker = f"t2-leak-{uuid.uuid4().hex}"
    program = f"""
import os
for folder in ("/tmp", "/var/tmp", "/dev/shm"):
    open(os.path.join(folder, "{marker}"), "w").write("x")
os.symlink("/etc/passwd", "/tmp/{marker}-link")
print(open(os.path.join(os.environ["HOME"], "program.py")).read() != "")
try:
    open("/tmp/{marker}-big", "wb").write(b"x" * (8 << 20))
except OSError as error:
    print("capped", error.errno)
"""
    result = run_python(program, max_file_mb=4)
    assert result.passed, result.stderr
    assert result.stdout.split("\n")[0] == "True" and "capped" in result.stdout
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not list(Path(folder).glob(f"{marker}*"))


@pytest.mark.skipif(sandbox_policy().cgroup_parent is None, reason="no writable memory cgroup here")
def test_memory_is_capped_for_the_whole_run_not_per_process() -> None:
    program = """
import os, time
children = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        block = bytearray(200 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.5)
        os._exit(0)
    children.append(pid)
print(sum(os.waitpid(pid, 0)[1] == 0 for pid in children))
"""
    result = run_python(program, memory_mb=512, timeout_s=20)
    assert result.passed, result.stderr
    assert int(result.stdout) <= 2  # 4 x 200 MB would be 800 MB: the cgroup stops it at 512 MB in all


@needs_root
@pytest.mark.skipif(not sandbox_policy().stdlib_by_mount, reason="the stdlib is readable by anyone here")
def test_the_stdlib_folders_lead_nowhere_else() -> None:
    program = """
import os, sys
found = []
for entry in sys.path:
    for depth in range(1, 9):
        up = entry + "/.." * depth
        found += [os.path.join(up, n) for n in ("version", "versions", ".pyenv") if os.path.exists(os.path.join(up, n))]
print(found)
"""
    result = run_python(program)
    assert result.passed, result.stderr
    assert result.stdout.strip() == "[]"


def test_thousands_of_nested_folders_neither_break_the_batch_nor_stay_behind() -> None:
    # shutil.rmtree (TemporaryDirectory's cleanup) raised RecursionError here, killing the whole batch.
    nest = "import os\nprint(os.getcwd())\nfor i in range(5000):\n    os.mkdir('d')\n    os.chdir('d')\n"
    results = run_many(["print('ok')", nest], timeout_s=5, workers=2)
    assert [result.status for result in results] == ["passed", "passed"], results[1].stderr
    assert not Path(results[1].stdout.split("\n")[0]).exists()


@needs_root
def test_the_working_folder_is_capped_in_total_size() -> None:
    # Each file is under max_file_mb, so only a cap on the folder as a whole stops the writes.
    program = """
written = 0
try:
    for i in range(24):
        with open("part%d" % i, "wb") as handle:
            handle.write(b"x" * (1 << 20))
        written += 1
except OSError as error:
    print("stopped", error.errno)
print(written)
"""
    result = run_python(program, max_file_mb=2, max_disk_mb=8)
    assert result.passed, result.stderr
    assert "stopped" in result.stdout and int(result.stdout.split()[-1]) <= 8
