"""Locations and process settings taken from the environment."""

from __future__ import annotations

import os
from pathlib import Path


def t2_home() -> Path:
    """The t2 home: caches (converted models, SVD factors) and the fallback registry."""
    return Path(os.environ.get("T2_HOME") or Path.home() / ".cache" / "t2").expanduser()


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count from the argument, else $T2_THREADS; return the count in use.

    On small machines the default (one thread per core) competes with anything else running, and
    2-thread matmuls can slow several-fold, so the count is always explicit and reported.
    """
    import torch

    from t2cli.errors import BadInputError

    if threads is None and os.environ.get("T2_THREADS"):
        raw = os.environ["T2_THREADS"]
        if not raw.strip().isdigit():
            raise BadInputError(f"T2_THREADS={raw!r} is not a thread count; set it to an integer >= 1 or unset it")
        threads = int(raw)
    if threads is not None:
        if threads < 1:
            raise BadInputError(f"thread count must be >= 1, got {threads}; pass --threads N with N >= 1")
        torch.set_num_threads(threads)
    return torch.get_num_threads()
