"""The server's counters in Prometheus' text format (version 0.0.4), written by hand.

A few counters and one histogram do not need a client library, and prometheus_client keeps its
metrics in a process-wide registry; these live on the app that counts them (several apps, e.g. in
tests, never mix). Endpoints are the server's own routes (anything else counts as `other`), experts
the registry's specs (or `base`), so no label takes values a client chooses.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


def _labels(**labels: str) -> str:
    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{key}="{escaped(value)}"' for key, value in labels.items()) + "}"


class Metrics:
    """Requests by endpoint and status, their latency, routing decisions per expert, and batches."""

    def __init__(self, endpoints: tuple[str, ...]) -> None:
        self.endpoints = endpoints
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._latency: dict[str, Histogram] = {}
        self._routed: Counter[str] = Counter()
        self._batches = 0
        self._batched = 0

    def endpoint(self, path: str) -> str:
        return path if path in self.endpoints else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        endpoint = self.endpoint(path)
        with self._lock:
            self._requests[(endpoint, str(status))] += 1
            self._latency.setdefault(endpoint, Histogram()).observe(seconds)

    def observe_route(self, expert: str | None) -> None:
        with self._lock:
            self._routed[expert or "base"] += 1

    def observe_batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self._batches += 1
            self._batched += size

    def render(self, queue_depth: int) -> str:
        """Every metric, in the text exposition format."""
        with self._lock:
            lines = [
                "# HELP t2_requests_total HTTP requests answered, by endpoint and status code.",
                "# TYPE t2_requests_total counter",
                *(
                    f"t2_requests_total{_labels(endpoint=e, status=s)} {n}"
                    for (e, s), n in sorted(self._requests.items())
                ),
                "# HELP t2_request_duration_seconds Time from a request's arrival to its response.",
                "# TYPE t2_request_duration_seconds histogram",
            ]
            for endpoint, histogram in sorted(self._latency.items()):
                name = "t2_request_duration_seconds"
                for bound, count in zip(histogram.buckets, histogram.counts, strict=True):
                    lines.append(f"{name}_bucket{_labels(endpoint=endpoint, le=str(bound))} {count}")
                lines += [
                    f"{name}_bucket{_labels(endpoint=endpoint, le='+Inf')} {histogram.count}",
                    f"{name}_sum{_labels(endpoint=endpoint)} {histogram.total:.6f}",
                    f"{name}_count{_labels(endpoint=endpoint)} {histogram.count}",
                ]
            lines += [
                "# HELP t2_routed_total Requests answered, by the expert that answered (base: the base weights).",
                "# TYPE t2_routed_total counter",
                *(f"t2_routed_total{_labels(expert=x)} {n}" for x, n in sorted(self._routed.items())),
                "# HELP t2_batches_total Batches answered (routed together, generated grouped by expert).",
                "# TYPE t2_batches_total counter",
                f"t2_batches_total {self._batches}",
                "# HELP t2_batched_requests_total Requests answered in those batches.",
                "# TYPE t2_batched_requests_total counter",
                f"t2_batched_requests_total {self._batched}",
                "# HELP t2_queue_depth Requests waiting or being answered.",
                "# TYPE t2_queue_depth gauge",
                f"t2_queue_depth {queue_depth}",
            ]
        return "\n".join(lines) + "\n"
