"""A streamed request's events, from the batcher's worker thread to the coroutine writing its response.

The service tells a request's `Listener` where pass 1 sent it (`routed`), then each piece of its answer
as the engine generates it (`text`); the batcher's future then holds the whole answer. `EventStream`
queues these on the server's event loop in the order they happen, the future's end (`finished`) last,
so the response sends its headers once the request is routed and each piece as soon as it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from t2cli.adapt.routers import Decision


class Listener(Protocol):
    """What the service tells a streamed request while its batch is answered (on the worker thread)."""

    def routed(self, decision: Decision, confidence: float | None) -> None: ...

    def text(self, piece: str) -> None: ...


@dataclass(frozen=True)
class Routed:
    decision: Decision
    confidence: float | None


@dataclass(frozen=True)
class Finished:
    """The batcher's future is done: its answer, or the exception that replaced it."""

    future: Future[Any]


Event = Routed | str | Finished  # a str is a piece of the answer's text


class EventStream:
    """A Listener whose events a coroutine awaits one by one (`next`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: asyncio.Queue[Event] = asyncio.Queue()

    def routed(self, decision: Decision, confidence: float | None) -> None:
        self._put(Routed(decision, confidence))

    def text(self, piece: str) -> None:
        self._put(piece)

    def finished(self, future: Future[Any]) -> None:
        """The batcher's future's done-callback."""
        self._put(Finished(future))

    async def next(self) -> Event:
        return await self._events.get()

    def _put(self, event: Event) -> None:
        # A closed loop raises RuntimeError: nobody is reading any more, and the batch must not fail for it.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
