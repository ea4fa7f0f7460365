"""The access log: one JSON object a line per request, written whole under a lock (threads never interleave)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Any, TextIO


class AccessLog:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        stamped = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **record}
        line = json.dumps(stamped, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()
