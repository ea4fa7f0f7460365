"""The developers' data folder is one setting: T2_TEST_DATA, else ../shared/data beside the checkout; a test
that needs it is skipped, a benchmark stops with one line, when it is absent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import shared_data

REPO = Path(__file__).resolve().parent.parent


def test_the_folder_is_the_setting_else_beside_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(shared_data.ENV, raising=False)
    assert shared_data.data_folder() == REPO.parent / "shared" / "data"
    monkeypatch.setenv(shared_data.ENV, str(tmp_path))
    (tmp_path / "gsm8k").mkdir()
    assert shared_data.needs_data("gsm8k") == tmp_path / "gsm8k"
    assert shared_data.bench_data("gsm8k") == tmp_path / "gsm8k"
    assert shared_data.bench_data("nope", required=False) is None


def test_absent_data_skips_a_test_and_stops_a_benchmark_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(shared_data.ENV, str(tmp_path / "missing"))
    with pytest.raises(pytest.skip.Exception, match="T2_TEST_DATA"):
        shared_data.needs_data("arc_easy")
    with pytest.raises(SystemExit, match=r"^error: .*missing/arc_easy not found: set T2_TEST_DATA"):
        shared_data.bench_data("arc_easy")


def test_no_test_or_benchmark_finds_the_folder_another_way() -> None:
    # A path built to the folder, or a default naming it (a path recorded in an old manifest is only text).
    built = re.compile(r'/ "shared"|\.\./shared/data|default="?/work/shared|Path\("/work/shared')
    readers = sorted(path for path in (REPO / "tests").rglob("*.py") if path.name != "shared_data.py")
    found = [
        str(path.relative_to(REPO)) for path in readers if path != Path(__file__) and built.search(path.read_text())
    ]
    assert found == [], f"read the developers' data through tests/shared_data.py: {found}"


def test_a_benchmark_without_the_folder_says_so_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "T2_TEST_DATA": str(tmp_path / "missing"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "bench" / "bench_payoff.py"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing'} not found: set T2_TEST_DATA to the developers' data folder "
        f"(default {shared_data.DEFAULT})"
    ]
