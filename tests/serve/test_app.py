"""`t2 serve`'s API through FastAPI's TestClient and the official `openai` client: routing, the OpenAI
formats (JSON and server-sent events), the key, the limits, metrics and the access log."""

from __future__ import annotations

import json

import openai
import pytest
from fastapi.testclient import TestClient

from t2cli.serve.schema import Limits
from tests.serve.conftest import CODE_WORD, MATH_WORD, OTHER_WORD


def chat(text: str, **fields: object) -> dict:
    return {"messages": [{"role": "user", "content": text}], **fields}


def test_auto_routes_every_request_to_its_expert_and_says_so(make_app) -> None:
    app, _, _ = make_app()
    with TestClient(app) as client:
        answers = {text: client.post("/v1/chat/completions", json=chat(text)) for text in (
            f"what is a {MATH_WORD} sum", f"write a {CODE_WORD} function", f"hello {OTHER_WORD}")}  # fmt: skip
    math, code, _ = answers.values()
    assert [a.status_code for a in answers.values()] == [200, 200, 200]
    assert [a.json()["t2"]["expert"] for a in answers.values()] == ["m@1", "c@1", None]
    assert [a.headers["x-t2-expert"] for a in answers.values()] == ["m@1", "c@1", "base"]
    # The completion names the weights it was generated with: m's z is 1.5, c's 0.5.
    assert math.json()["choices"][0]["message"]["content"].startswith("z=1.50|")
    assert code.json()["choices"][0]["message"]["content"].startswith("z=0.50|")
    body = math.json()
    assert body["object"] == "chat.completion" and body["model"] == "m@1" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"]["role"] == "assistant" and body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert body["t2"]["label"] == "gsm8k" and body["t2"]["alpha"] is None and body["t2"]["path"] == "exact"
    assert body["t2"]["confidence"] == pytest.approx(float(math.headers["x-t2-confidence"]), abs=1e-4)
    assert body["t2"]["confidence"] > 0.8  # calibrated: e^3 / (e^3 + 2)


def test_a_named_expert_or_base_is_answered_without_routing_and_an_unknown_one_is_404(make_app) -> None:
    app, _, engine = make_app()
    with TestClient(app) as client:
        named = client.post("/v1/completions", json={"model": "c", "prompt": f"a {MATH_WORD} sum"}).json()
        base = client.post("/v1/completions", json={"model": "base", "prompt": f"a {MATH_WORD} sum"}).json()
        unknown = client.post("/v1/completions", json={"model": "nope@3", "prompt": "hi"})
        listed = client.get("/v1/models").json()
    assert named["object"] == "text_completion" and named["choices"][0]["text"].startswith("z=0.50|")
    assert (named["t2"]["expert"], named["t2"]["confidence"]) == ("c@1", None)
    assert base["t2"]["expert"] is None and base["model"] == "base"
    assert not engine.label_calls  # pass 1 never ran: every request named its model
    assert unknown.status_code == 404
    message = unknown.json()["error"]["message"]
    assert message == "model 'nope@3' is not served here; use auto, base or one of GET /v1/models"
    assert [m["id"] for m in listed["data"]] == ["auto", "base", "c@1", "m@1"]


def test_streams_are_server_sent_events_ending_with_done(make_app) -> None:
    app, _, _ = make_app()
    with TestClient(app) as client:
        stream = client.post("/v1/chat/completions", json=chat(f"{MATH_WORD}?", stream=True,
                                                             stream_options={"include_usage": True}))  # fmt: skip
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["x-t2-expert"] == "m@1"
    events = [line.removeprefix("data: ") for line in stream.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    # The role as soon as the request is routed; this engine does not stream, so its text comes whole.
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["model"] == "m@1" and chunks[0]["t2"]["expert"] == "m@1" and chunks[0]["t2"]["label"] == "gsm8k"
    assert chunks[1]["choices"][0]["delta"]["content"].startswith("z=1.50|")
    assert chunks[2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[2]["t2"]["path"] == "exact"
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 2
    assert len(chunks) == 4


def test_the_official_openai_client_talks_to_it(make_app) -> None:
    app, _, _ = make_app(api_key="secret")
    with TestClient(app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="secret", http_client=http)
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": f"{CODE_WORD} please"}], max_tokens=4
        )
        answer = raw.parse()
        assert raw.headers["x-t2-expert"] == "c@1"
        assert answer.model == "c@1" and answer.choices[0].message.content.startswith("z=0.50|")
        assert answer.model_extra["t2"]["expert"] == "c@1" and answer.usage.total_tokens == 2
        streamed = client.completions.create(model="m", prompt="hi", stream=True)
        assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices).startswith("z=1.50|")
        assert {model.id for model in client.models.list()} == {"auto", "base", "c@1", "m@1"}
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=http).models.list()


def test_the_key_guards_the_api_and_metrics_but_not_health(make_app) -> None:
    app, _, _ = make_app(api_key="secret")
    with TestClient(app) as client:
        refused = [
            client.post("/v1/chat/completions", json=chat("hi")),
            client.get("/v1/models", headers={"Authorization": "Bearer wrong"}),
            client.get("/metrics", headers={"Authorization": "secret"}),
        ]
        assert [r.status_code for r in refused] == [401, 401, 401]
        assert refused[0].headers["www-authenticate"] == "Bearer"
        assert refused[0].json()["error"]["type"] == "authentication_error"
        assert client.get("/v1/models", headers={"Authorization": "Bearer secret"}).status_code == 200
        assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (chat("hi", max_tokens=5000), "`max_tokens` 5000 is over this server's limit of 1024; ask for fewer"),
        (chat("hi", max_tokens=0), "`max_tokens` must be a whole number >= 1, got 0"),
        (chat("hi", n=2), "`n` must be 1: t2 answers one completion per request"),
        (chat("hi", temperature=-1), "temperature must be >= 0, got -1.0"),
        ({"messages": []}, "`messages` must be a non-empty list of {role, content} objects"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0] has role 'robot'; use one of system"),
        (chat("x" * 200), "this request: the prompt is 200 tokens, longer than the 64-token context of tiny-llama"),
        ("[1, 2", "the request body is malformed JSON"),
        ("x" * 3000, "the request body is over this server's limit of 2,048 bytes; send a shorter prompt"),
    ],
)
def test_bad_or_oversized_requests_are_400_with_one_line(make_app, body, reason) -> None:
    app, log, _ = make_app(limits=Limits(max_request_bytes=2048))
    with TestClient(app) as client:
        content = body if isinstance(body, str) else json.dumps(body)
        answer = client.post("/v1/chat/completions", content=content)
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert message.startswith(reason) and "\n" not in message
    assert json.loads(log.getvalue().splitlines()[-1])["error"] == message


def test_metrics_count_requests_latency_routes_and_queue_and_the_access_log_is_json_lines(make_app) -> None:
    app, log, _ = make_app()
    with TestClient(app) as client:
        client.post("/v1/chat/completions", json=chat(f"{MATH_WORD}!"))
        client.post("/v1/completions", json={"model": "c", "prompt": "hi"})
        client.post("/v1/completions", json={"prompt": ""})
        text = client.get("/metrics").text
    assert 't2_requests_total{endpoint="/v1/chat/completions",status="200"} 1' in text
    assert 't2_requests_total{endpoint="/v1/completions",status="400"} 1' in text
    assert 't2_request_duration_seconds_count{endpoint="/v1/completions"} 2' in text
    assert 't2_routed_total{expert="m@1"} 1' in text and 't2_routed_total{expert="c@1"} 1' in text
    assert "t2_queue_depth 0" in text and "t2_batches_total 2" in text
    assert "# TYPE t2_request_duration_seconds histogram" in text
    records = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [(r["path"], r["status"]) for r in records] == [
        ("/v1/chat/completions", 200),
        ("/v1/completions", 200),
        ("/v1/completions", 400),
        ("/metrics", 200),
    ]
    first = records[0]
    assert first["model"] == "auto" and first["expert"] == "m@1" and first["completion_tokens"] == 1
    assert first["id"].startswith("chatcmpl-") and first["seconds"] >= 0 and "time" in first


def test_a_named_mixture_answers_with_its_alpha(make_app, registry) -> None:
    from t2cli.experts.compose import compose_recipe
    from t2cli.experts.recipes import recipe_from_cli

    registry.publish(compose_recipe(recipe_from_cli(["m=0.4", "c=0.6"], output="mix"), registry, "tiny-llama"))
    app, _, _ = make_app()
    with TestClient(app) as client:
        answer = client.post("/v1/completions", json={"model": "mix", "prompt": "hi"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["t2"]["expert"] == "mix@1"
    assert answer.json()["t2"]["alpha"] == {"m@1": 0.4, "c@1": 0.6}
    assert json.loads(answer.headers["x-t2-alpha"]) == {"m@1": 0.4, "c@1": 0.6}
