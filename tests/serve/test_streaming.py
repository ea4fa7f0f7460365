"""Streaming: `"stream": true` sends the answer token by token as the engine generates it, in OpenAI's chunks,
the pieces adding up to the unstreamed answer; a refusal before routing is a plain error, a crash midway the
stream's last event."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence

import httpx
import openai
import pytest
import uvicorn
from fastapi.testclient import TestClient

from t2cli.engines.base import Generation, OnText, Prompt, Sampling
from t2cli.engines.hf import HFEngine
from tests.helpers import FakeEngine, tiny_model
from tests.serve.test_live import free_port

PROMPT = "the cat sat on"


def test_streamed_chunks_add_up_to_the_unstreamed_answer_and_arrive_token_by_token(make_app, t2_home) -> None:
    engine = HFEngine(tiny_model(), batch_size=4)
    app, log, _ = make_app(engine)
    with TestClient(app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http)
        for model in ("m", "base"):
            whole = client.completions.create(model=model, prompt=PROMPT, max_tokens=12)
            chunks = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=12, stream=True))
            texts = [chunk.choices[0].text for chunk in chunks if chunk.choices and chunk.choices[0].text]
            assert "".join(texts) == whole.choices[0].text and len(texts) > 1
            assert {chunk.model for chunk in chunks} == {whole.model}
            assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
        chat = [{"role": "user", "content": PROMPT}]
        whole = client.chat.completions.create(model="m", messages=chat, max_tokens=12)
        chunks = list(client.chat.completions.create(model="m", messages=chat, max_tokens=12, stream=True))
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert "".join(pieces) == whole.choices[0].message.content and len(pieces) > 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.model_extra["t2"]["expert"] == "m@1" for chunk in chunks)
    streamed = json.loads(log.getvalue().splitlines()[-1])  # logged once its last byte was out
    assert streamed["completion_tokens"] == whole.usage.completion_tokens and streamed["expert"] == "m@1"


class SteppedEngine(FakeEngine):
    """Streams its answer in two pieces, and sends the second only once `release` is set: a server that
    held the first piece back until the generation ended would never see it released."""

    streams = True

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.fail = False

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, on_text: OnText | None = None
    ) -> list[Generation]:
        assert on_text is not None
        on_text(0, "first ")
        if not self.release.wait(30):
            raise TimeoutError("the first piece never reached the client")
        if self.fail:
            raise RuntimeError("injected failure")
        on_text(0, "second")
        return [Generation("first second", (1, 2), 1, "length") for _ in prompts]


@pytest.fixture
def live(make_app) -> Iterator[tuple[str, SteppedEngine]]:
    """A server on a port of its own, so that the client reads the stream as it is written."""
    engine = SteppedEngine()
    app, _, _ = make_app(engine)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        yield f"http://127.0.0.1:{port}", engine
    finally:
        engine.release.set()
        server.should_exit = True
        thread.join(30)


def events_of(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line.removeprefix("data: ")


def test_each_piece_reaches_the_client_while_the_rest_is_still_generating(live) -> None:
    url, engine = live
    body = {"model": "m", "prompt": "hi", "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200 and response.headers["x-t2-expert"] == "m@1"
        events = events_of(response)
        assert json.loads(next(events))["choices"][0]["text"] == "first "
        engine.release.set()  # only now may the engine go on
        rest = list(events)
    assert json.loads(rest[0])["choices"][0]["text"] == "second"
    assert json.loads(rest[1])["choices"][0]["finish_reason"] == "length" and rest[-1] == "[DONE]"


def test_a_generation_that_fails_midway_ends_its_stream_with_an_error_event(live) -> None:
    url, engine = live
    engine.fail = True
    body = {"model": "m", "prompt": "hi", "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as response:
        events = events_of(response)
        assert json.loads(next(events))["choices"][0]["text"] == "first "
        engine.release.set()
        rest = list(events)
    assert response.status_code == 200  # sent with the first piece
    assert json.loads(rest[0])["error"]["type"] == "server_error" and rest[-1] == "[DONE]"
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_a_stream_refused_before_routing_is_a_plain_error(make_app) -> None:
    app, _, _ = make_app()
    with TestClient(app) as client:
        unknown = client.post("/v1/completions", json={"model": "nope", "prompt": "hi", "stream": True})
        too_long = client.post("/v1/completions", json={"prompt": "x" * 200, "stream": True})
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"
    assert too_long.status_code == 400 and "64-token context" in too_long.json()["error"]["message"]
