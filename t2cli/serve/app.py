"""The FastAPI app: OpenAI's routes over the batcher, with the key, limits, metrics and access log.

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models (all three need the key when the
server has one), GET /metrics (Prometheus text, also behind the key) and GET /health (open, for probes).
Refusals are OpenAI error objects with one-line messages: 400 a malformed or oversized request, 401 no
key, 404 an unknown expert, 429 a full queue (Retry-After), 503 draining, 500 a failed generation. A
streamed request is refused the same way until pass 1 has routed it; its 200 and headers go out then,
and its text as the engine generates it. Latency metrics and the access log count a response to its
last byte.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from t2cli.errors import BadInputError, NotFoundError
from t2cli.serve.accesslog import AccessLog
from t2cli.serve.auth import authorized
from t2cli.serve.batcher import Batcher, BatchSettings, Draining, Overloaded
from t2cli.serve.metrics import Metrics
from t2cli.serve.responses import StreamHead, completion_body, error_body, error_events, headers
from t2cli.serve.schema import Ask, Limits, parse_chat, parse_completion
from t2cli.serve.streaming import EventStream, Finished, Routed

if TYPE_CHECKING:
    from t2cli.serve.service import Answer, Service

CHAT, COMPLETIONS, MODELS = "/v1/chat/completions", "/v1/completions", "/v1/models"
ENDPOINTS = (CHAT, COMPLETIONS, MODELS, "/health", "/metrics")


@dataclass(frozen=True)
class ServeConfig:
    limits: Limits = field(default_factory=Limits)
    batching: BatchSettings = field(default_factory=BatchSettings)
    api_key: str | None = None


class ApiError(Exception):
    """A refusal: its status, one-line message, OpenAI error type and extra headers."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, " ".join(message.split()), kind, headers or {}


def refusal(error: Exception) -> ApiError:
    """The HTTP answer for what stopped a request."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, BadInputError):
        return ApiError(400, str(error), "invalid_request_error")
    if isinstance(error, NotFoundError):
        return ApiError(404, str(error), "invalid_request_error")
    if isinstance(error, Overloaded):
        return ApiError(429, str(error), "rate_limit_error", {"Retry-After": str(error.retry_after)})
    if isinstance(error, Draining):
        return ApiError(503, str(error), "server_error")
    return ApiError(500, f"generation failed ({type(error).__name__}: {error}); the server is still up", "server_error")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (400) as soon as it is known to be over `limit` bytes."""
    message = f"the request body is over this server's limit of {limit:,} bytes; send a shorter prompt"
    too_big = ApiError(400, message, "invalid_request_error")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def create_app(service: Service, config: ServeConfig, log: TextIO) -> FastAPI:
    """The server over `service`; its batcher runs while the app's lifespan does and drains when it ends."""
    metrics = Metrics(ENDPOINTS)
    access = AccessLog(log)
    batcher: Batcher[Ask, Answer] = Batcher(service.answer, config.batching, on_batch=metrics.observe_batch)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)  # answers every queued request first

    app = FastAPI(title="t2 serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.message, error.kind), status_code=error.status, headers=error.headers)

    @app.middleware("http")
    async def measure_and_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        request.state.t2 = {}
        response = await call_next(request)

        def record() -> None:
            seconds = time.perf_counter() - started
            metrics.observe_request(request.url.path, response.status_code, seconds)
            client = request.client.host if request.client else None
            where = {"method": request.method, "path": request.url.path, "client": client}
            access.write({**where, "status": response.status_code, "seconds": round(seconds, 4), **request.state.t2})

        async def recorded(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            try:
                async for chunk in body:
                    yield chunk
            finally:  # the last byte is out (or the client left): a stream's time and token counts are known
                record()

        response.body_iterator = recorded(response.body_iterator)  # type: ignore[attr-defined]
        return response

    def require_key(request: Request) -> None:
        if not authorized(request.headers.get("authorization"), config.api_key):
            raise ApiError(
                401,
                "this server needs its API key: send Authorization: Bearer <key> (the server's --api-key)",
                "authentication_error",
                {"WWW-Authenticate": "Bearer"},
            )

    async def answer(request: Request, parse: Callable[[bytes, Limits], Ask]) -> Response:
        state: dict[str, Any] = request.state.t2
        try:
            ask = parse(await read_body(request, config.limits.max_request_bytes), config.limits)
            state["model"] = ask.model
            if ask.stream:
                return await stream(ask, state)
            result = await asyncio.wrap_future(batcher.submit(ask))
        except Exception as error:
            refused = refusal(error)
            state["error"] = refused.message
            raise refused from None
        request_id = note_route(ask, state, result.decision.expert, result.confidence)
        state |= tokens(result)
        body = completion_body(ask, result, request_id, int(time.time()))
        return JSONResponse(body, headers=headers(result.decision, result.confidence))

    def note_route(ask: Ask, state: dict[str, Any], expert: str | None, confidence: float | None) -> str:
        """Count where pass 1 sent a request, note it for the access log, and name the response."""
        metrics.observe_route(expert)
        request_id = f"{'chatcmpl' if ask.endpoint == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        state |= {"id": request_id, "expert": expert, "confidence": confidence}
        return request_id

    def tokens(result: Answer) -> dict[str, int]:
        return {"prompt_tokens": result.generation.prompt_tokens, "completion_tokens": len(result.generation.token_ids)}

    async def stream(ask: Ask, state: dict[str, Any]) -> Response:
        """Wait for pass 1 (a refusal until then is a plain error response), then stream the answer."""
        events = EventStream(asyncio.get_running_loop())
        future = batcher.submit(replace(ask, listener=events))
        future.add_done_callback(events.finished)
        try:
            first = await events.next()
        except asyncio.CancelledError:  # the client left while the request waited: answer it only if started
            future.cancel()
            raise
        if isinstance(first, Finished):  # refused before pass 1 routed it: a too-long prompt, an unknown expert
            first.future.result()  # raises the refusal
        if not isinstance(first, Routed):
            raise RuntimeError("the service sent text before routing the request")
        request_id = note_route(ask, state, first.decision.expert, first.confidence)
        head = StreamHead(ask, request_id, int(time.time()), first.decision, first.confidence)

        async def body() -> AsyncIterator[str]:
            for chunk in head.opening():
                yield chunk
            shown = ""  # what the engine streamed; an engine that does not stream gives it all at the end
            while isinstance(event := await events.next(), str):
                shown += event
                yield head.text(event)
            assert isinstance(event, Finished)
            try:
                result = event.future.result()
            except Exception as error:  # the 200 is out: the failure is the stream's last event
                refused = refusal(error)
                state.update(error=refused.message)
                for chunk in error_events(refused.message, refused.kind):
                    yield chunk
                return
            if len(result.generation.text) > len(shown):
                yield head.text(result.generation.text[len(shown) :])
            state.update(tokens(result))
            for chunk in head.closing(result):
                yield chunk

        return StreamingResponse(
            body(), media_type="text/event-stream", headers=headers(first.decision, first.confidence)
        )

    @app.post(CHAT, dependencies=[Depends(require_key)])
    async def chat_completions(request: Request) -> Response:
        return await answer(request, parse_chat)

    @app.post(COMPLETIONS, dependencies=[Depends(require_key)])
    async def completions(request: Request) -> Response:
        return await answer(request, parse_completion)

    @app.get(MODELS, dependencies=[Depends(require_key)])
    async def models() -> dict[str, Any]:
        ids = await asyncio.to_thread(service.model_ids)
        return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "t2"} for i in ids]}

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(batcher.depth), media_type="text/plain; version=0.0.4")

    @app.get("/health")
    async def health() -> JSONResponse:
        status = "draining" if batcher.closing else "ok"
        body = {"status": status, "model": service.slot.loaded.model_id, "queue_depth": batcher.depth}
        return JSONResponse(body, status_code=503 if batcher.closing else 200)

    return app
