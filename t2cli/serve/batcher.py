"""The request queue: requests that arrive within a short window are answered together, in one batch.

One worker thread owns the model. It waits for a request, then up to `window` seconds more (or until
`max_batch` are waiting) and hands the batch to `answer`; each request's future gets its own result.
The queue is bounded: past `max_queue` waiting requests `submit` raises `Overloaded` (a 429 with a
Retry-After of about one batch's time). `close` refuses new requests, answers every queued one, then
stops the worker: SIGTERM drains instead of dropping.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from t2cli.errors import BadInputError, T2Error

Item = TypeVar("Item")
Result = TypeVar("Result")


class Overloaded(T2Error):
    """The queue is full; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy (its queue is full); retry in {retry_after} s")
        self.retry_after = retry_after


class Draining(T2Error):
    """The server is shutting down: it answers what it holds and takes nothing new."""


@dataclass(frozen=True)
class BatchSettings:
    window: float = 0.02  # seconds a batch waits for more requests after its first
    max_batch: int = 64  # requests per batch (t2 run's chunk size)
    max_queue: int = 256  # requests waiting, beyond the batch being answered

    def __post_init__(self) -> None:
        if not 0 <= self.window <= 10:
            raise BadInputError(f"--batch-window must be in [0, 10] seconds, got {self.window}")
        if self.max_batch < 1 or self.max_queue < 1:
            raise BadInputError("--max-batch and --max-queue must be >= 1")


@dataclass
class _Waiting(Generic[Item, Result]):
    item: Item
    future: Future[Result]
    arrived: float


class Batcher(Generic[Item, Result]):
    """Collects submitted items into batches for `answer`, on one worker thread."""

    def __init__(
        self,
        answer: Callable[[list[Item]], Sequence[Result | Exception]],
        settings: BatchSettings,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._answer, self.settings, self._on_batch = answer, settings, on_batch
        self._queue: deque[_Waiting[Item, Result]] = deque()
        self._ready = threading.Condition()
        self._running = 0  # requests of the batch being answered
        self._closing = False
        self._batch_seconds = 1.0  # the last batch's time: what Retry-After promises
        self._worker = threading.Thread(target=self._work, name="t2-serve-batcher", daemon=True)

    @property
    def depth(self) -> int:
        """Requests waiting or being answered."""
        with self._ready:
            return len(self._queue) + self._running

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        self._worker.start()

    def submit(self, item: Item) -> Future[Result]:
        """Queue one item; its future gets the answer (or the exception that replaced it)."""
        future: Future[Result] = Future()
        with self._ready:
            if self._closing:
                raise Draining("the server is shutting down; send the request to another instance")
            if len(self._queue) >= self.settings.max_queue:
                raise Overloaded(max(1, math.ceil(self._batch_seconds)))
            self._queue.append(_Waiting(item, future, time.monotonic()))
            self._ready.notify()
        return future

    def close(self) -> None:
        """Take no more requests, answer the queued ones, and stop the worker."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._worker.is_alive():
            self._worker.join()

    def _next_batch(self) -> list[_Waiting[Item, Result]] | None:
        """The next batch once its window has passed (or it is full); None when closed and empty."""
        with self._ready:
            while not self._queue:
                if self._closing:
                    return None
                self._ready.wait()
            deadline = self._queue[0].arrived + self.settings.window
            while len(self._queue) < self.settings.max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            size = min(self.settings.max_batch, len(self._queue))
            taken = [self._queue.popleft() for _ in range(size)]
            # A request whose client went away (its future cancelled) is not answered.
            batch = [waiting for waiting in taken if waiting.future.set_running_or_notify_cancel()]
            self._running = len(batch)
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch:
                continue
            started = time.monotonic()
            try:
                results = list(self._answer([waiting.item for waiting in batch]))
            except Exception as error:  # the whole batch failed: each request gets the error, the worker lives
                results = [error] * len(batch)
            for waiting, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    waiting.future.set_exception(result)
                else:
                    waiting.future.set_result(result)
            seconds = time.monotonic() - started
            with self._ready:
                self._running = 0
                self._batch_seconds = seconds
            if self._on_batch is not None:
                self._on_batch(len(batch), seconds)
