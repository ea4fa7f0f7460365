"""Batches: requests in one window are routed together and generated grouped by expert, each answer equal to
`t2 run`'s for its prompt (no cross-talk); a full queue is 429, a crash 500 for its batch, close drains."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Sequence

import httpx
import pytest
from typer.testing import CliRunner

from t2cli.adapt.runio import line_from_data
from t2cli.adapt.two_pass import run_batch
from t2cli.cli.app import app as cli
from t2cli.engines.base import Generation, Prompt, Sampling
from t2cli.serve.batcher import Batcher, BatchSettings, Draining, Overloaded
from tests.helpers import FakeEngine, tiny_cli_world
from tests.serve.conftest import CODE_WORD, MATH_WORD, OTHER_WORD, routed_engine


def chat(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


async def _posts(app, bodies: Sequence[dict], path: str = "/v1/chat/completions") -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return list(await asyncio.gather(*(client.post(path, json=body) for body in bodies)))


def posts(app, bodies: Sequence[dict], path: str = "/v1/chat/completions") -> list[httpx.Response]:
    """Every body sent at once, as concurrent clients would."""
    return asyncio.run(_posts(app, bodies, path))


def test_32_concurrent_clients_get_the_batch_answer_for_their_prompt(make_app, registry) -> None:
    app, _, engine = make_app(batching=BatchSettings(window=0.5))
    words = (MATH_WORD, CODE_WORD, OTHER_WORD)
    texts = [f"{words[i % 3]} question {i}" for i in range(32)]
    answers = posts(app, [chat(text) for text in texts])
    assert [answer.status_code for answer in answers] == [200] * 32

    # `t2 run`'s answers for the same lines, on an engine of their own.
    lines = [line_from_data({"prompt": text}, number) for number, text in enumerate(texts, 1)]
    service = routed_engine(FakeEngine(), registry)
    rows, _ = run_batch(lines, lambda: service.router, service.slot, Sampling())
    assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [row["completion"] for row in rows]
    assert [a.json()["t2"]["expert"] for a in answers] == [row["expert"] for row in rows]
    assert {row["expert"] for row in rows} == {"m@1", "c@1", None}
    # One window: pass 1 once for all 32, then one generation per expert (two swaps, the base needs none).
    assert len(engine.label_calls) == 1 and len(engine.label_calls[0][0]) == 32 + 1  # + the calibration row
    assert engine.generate_calls == 3 and engine.set_calls == ["z=1.50", "z=0.50"]


class GatedEngine(FakeEngine):
    """Generation waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        assert self.gate.wait(30)
        return super().generate(prompts, sampling)


def test_a_full_queue_is_429_with_retry_after_and_the_queued_are_answered(make_app) -> None:
    engine = GatedEngine()
    app, _, _ = make_app(engine, batching=BatchSettings(window=0, max_batch=1, max_queue=1))

    async def scenario() -> tuple[list[httpx.Response], httpx.Response, int]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def depth(wanted: int) -> int:
                for _ in range(200):
                    found = (await c.get("/health")).json()["queue_depth"]
                    if found == wanted:
                        return found
                    await asyncio.sleep(0.02)
                return found

            first = asyncio.create_task(c.post("/v1/completions", json={"model": "base", "prompt": "one"}))
            await depth(1)  # the worker holds it, waiting at the gate
            second = asyncio.create_task(c.post("/v1/completions", json={"model": "base", "prompt": "two"}))
            seen = await depth(2)  # queued
            refused = await c.post("/v1/completions", json={"model": "base", "prompt": "three"})
            engine.gate.set()
            return [await first, await second], refused, seen

    answered, refused, seen = asyncio.run(scenario())
    assert seen == 2 and [a.status_code for a in answered] == [200, 200]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["message"].startswith("the server is busy (its queue is full)")


class CrashingEngine(FakeEngine):
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        if any("crash" in str(prompt) for prompt in prompts):
            raise RuntimeError("injected failure")
        return super().generate(prompts, sampling)


def test_a_crashed_generation_is_500_for_its_batch_and_the_server_stays_up(make_app) -> None:
    app, _, _ = make_app(CrashingEngine(), batching=BatchSettings(window=0.3))

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            batch = [c.post("/v1/chat/completions", json=chat(t)) for t in (f"{MATH_WORD} crash", f"{MATH_WORD} ok")]
            crashed = list(await asyncio.gather(*batch))
            return crashed, await c.post("/v1/chat/completions", json=chat(f"{MATH_WORD} later"))

    crashed, later = asyncio.run(scenario())
    assert [answer.status_code for answer in crashed] == [500, 500]  # one generation, both its requests
    message = crashed[0].json()["error"]["message"]
    assert message == "generation failed (RuntimeError: injected failure); the server is still up"
    assert later.status_code == 200 and later.json()["t2"]["expert"] == "m@1"


def test_the_batcher_groups_a_window_splits_at_max_batch_and_drains_on_close() -> None:
    seen: list[list[int]] = []

    def answer(items: list[int]) -> list[int | Exception]:
        seen.append(items)
        time.sleep(0.05)
        return [ValueError("odd") if item % 2 else item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(answer, BatchSettings(window=0.3, max_batch=3, max_queue=10))
    batcher.start()
    futures = [batcher.submit(item) for item in range(5)]
    batcher.close()  # answers all five before it returns
    assert seen == [[0, 1, 2], [3, 4]]
    assert [f.result() for f in futures[::2]] == [0, 20, 40]
    with pytest.raises(ValueError, match="odd"):
        futures[1].result()
    with pytest.raises(Draining):
        batcher.submit(5)


def test_the_batcher_refuses_past_its_queue_and_skips_cancelled_requests() -> None:
    answered: list[list[str]] = []
    batcher: Batcher[str, str] = Batcher(lambda items: answered.append(items) or items, BatchSettings(max_queue=2))
    kept, dropped = batcher.submit("kept"), batcher.submit("dropped")
    with pytest.raises(Overloaded) as refused:
        batcher.submit("third")
    assert refused.value.retry_after >= 1
    dropped.cancel()  # its client went away before the worker started
    batcher.start()
    batcher.close()
    assert answered == [["kept"]] and kept.result() == "kept"


def test_greedy_answers_equal_t2_run_on_the_transformers_engine(tmp_path, t2_home) -> None:
    from t2cli.adapt.prepare import make_router
    from t2cli.engines.hf import HFEngine
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.registry import Registry
    from t2cli.models.loading import load_model
    from t2cli.serve.app import ServeConfig, create_app
    from t2cli.serve.service import Service

    texts = ["what is two plus three?", "is ice cold? a. yes b. no", "hello there", "name a red fruit."]
    world = tiny_cli_world(tmp_path, [{"prompt": text} for text in texts])
    args = ["--adapt", "prompt", "--max-new-tokens", "6", "--model", world["model"], "--registry", world["registry"]]
    result = CliRunner().invoke(cli, ["run", str(world["prompts"]), *args])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]

    loaded = load_model(world["model"])
    slot = ExpertSlot(HFEngine(loaded), Registry(world["registry"]), loaded)
    service = Service(slot, make_router("prompt", slot, loaded, slot.registry))
    server = create_app(service, ServeConfig(batching=BatchSettings(window=1.0)), io.StringIO())
    answers = posts(server, [{"prompt": text, "max_tokens": 6} for text in texts], "/v1/completions")
    assert [a.json()["t2"]["expert"] for a in answers] == [row["expert"] for row in rows]
    assert [a.json()["choices"][0]["text"] for a in answers] == [row["completion"] for row in rows]
    assert any(row["completion"] for row in rows)
