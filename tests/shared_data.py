"""The developers' data folder, behind one setting: tests and benchmarks read it only through this module.

It is `../shared/data` beside the project's own checkout: byte-for-byte copies of public datasets (ARC-Easy,
GSM8K, MBPP, MBPP+, HumanEval; its SOURCES.md names each file's repository and commit), fast and offline.
A clone has no such folder: `T2_TEST_DATA=/path/to/data` points at another copy; without one, a test that
needs it is skipped (saying so) and a benchmark stops with one error line. Users never need it: every
built-in task reads its Hub dataset (docs/tasks.md).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "T2_TEST_DATA"
DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_folder() -> Path:
    """Where the developers' data is looked for: $T2_TEST_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get(ENV) or DEFAULT).expanduser()


def _missing(path: Path) -> str:
    return f"{path} not found: set {ENV} to the developers' data folder (default {DEFAULT})"


def needs_data(*parts: str) -> Path:
    """A file or folder of the data folder, for a test: skipped with the reason when it is absent."""
    import pytest

    path = data_folder().joinpath(*parts)
    if not path.exists():
        pytest.skip(_missing(path))
    return path


def bench_data(*parts: str, required: bool = True) -> Path | None:
    """A file or folder of the data folder, for a benchmark: when absent, one error line and exit 1
    (or None, when not `required`: the benchmark has a fallback)."""
    path = data_folder().joinpath(*parts)
    if path.exists():
        return path
    if not required:
        return None
    raise SystemExit(f"error: {_missing(path)}")
