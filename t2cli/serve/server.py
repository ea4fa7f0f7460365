"""Running the app: uvicorn in this process, SIGTERM (or Ctrl-C) drains it, and the process exits 0.

uvicorn stops accepting connections on the signal, waits for the requests in flight, then ends the
app's lifespan, whose batcher answers whatever is still queued. It then raises the signal again for the
handler it found; the one installed here ignores it, so a drained server returns normally (exit 0)
instead of dying of the signal (143).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from t2cli.errors import EngineError

if TYPE_CHECKING:
    from fastapi import FastAPI

DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def require_server_stack() -> None:
    """Refuse, before any model loads, an installation without FastAPI and uvicorn."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise EngineError(f"t2 serve needs FastAPI and uvicorn ({error}); pip install 't2cli[serve]'") from None


def _drained(signum: int, frame: object) -> None:
    """uvicorn's re-raised signal, after the drain: nothing is left to do."""


def run(app: FastAPI, host: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C, then drain; raise EngineError when the server could not start."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    previous = {sig: signal.signal(sig, _drained) for sig in DRAIN_SIGNALS}
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind (its own log line says why)
        raise EngineError(f"t2 serve could not listen on {host}:{port}; pick another --port or --host") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise EngineError(f"t2 serve could not start on {host}:{port}")
