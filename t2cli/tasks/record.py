"""One record of a task's data: a JSON object or a Parquet row, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Record:
    """One JSON object of a data file, with its position for ids and error messages."""

    data: dict[str, Any]
    index: int  # 0-based position among the file's records; stable whatever the split
    where: str  # "path:line"
