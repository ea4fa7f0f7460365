"""Answers in the OpenAI format: a completion object, or its server-sent events, plus what t2 adds.

Every response names the expert that answered as its `model` (`base` for the base weights) and carries a
`t2` object: `expert` (null for the base), `alpha` (a mixture's α per bank expert), `label`, `confidence`
(pass 1's probability for the chosen category, `auto` requests only) and `path`. The same facts travel in
headers (`X-T2-Expert`, `X-T2-Confidence`, `X-T2-Alpha`) for clients that read no extra fields. A streamed
answer is the whole completion as one content chunk after its batch is generated (the engines generate
whole batches), then the finish chunk, an optional usage chunk, and `[DONE]`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from t2cli.serve.schema import Ask
    from t2cli.serve.service import Answer

OBJECTS = {"chat": ("chat.completion", "chat.completion.chunk"), "completion": ("text_completion", "text_completion")}


def t2_fields(answer: Answer) -> dict[str, Any]:
    decision = answer.decision
    return {
        "expert": decision.expert,
        "alpha": decision.alpha,
        "label": decision.label,
        "confidence": answer.confidence,
        "path": answer.path,
    }


def headers(answer: Answer) -> dict[str, str]:
    fields = {"X-T2-Expert": answer.decision.expert or "base"}
    if answer.confidence is not None:
        fields["X-T2-Confidence"] = f"{answer.confidence:.4f}"
    if answer.decision.alpha:
        fields["X-T2-Alpha"] = json.dumps(answer.decision.alpha, separators=(",", ":"))
    return fields


def usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.generation.prompt_tokens, len(answer.generation.token_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _head(ask: Ask, answer: Answer, request_id: str, created: int, streamed: bool) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": OBJECTS[ask.endpoint][streamed],
        "created": created,
        "model": answer.decision.expert or "base",
    }


def completion_body(ask: Ask, answer: Answer, request_id: str, created: int) -> dict[str, Any]:
    """The whole answer as one JSON object."""
    text, finish = answer.generation.text, answer.generation.finish_reason
    if ask.endpoint == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    head = _head(ask, answer, request_id, created, streamed=False)
    return {**head, "choices": [choice], "usage": usage(answer), "t2": t2_fields(answer)}


def stream_events(ask: Ask, answer: Answer, request_id: str, created: int) -> list[str]:
    """The answer as server-sent events, `data: {...}` each, ending with `data: [DONE]`."""
    head = _head(ask, answer, request_id, created, streamed=True)
    text, finish = answer.generation.text, answer.generation.finish_reason
    if ask.endpoint == "chat":
        choices = [
            {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None},
            {"index": 0, "delta": {}, "finish_reason": finish},
        ]
    else:
        choices = [
            {"index": 0, "text": text, "logprobs": None, "finish_reason": None},
            {"index": 0, "text": "", "logprobs": None, "finish_reason": finish},
        ]
    chunks = [{**head, "choices": [choice], "t2": t2_fields(answer)} for choice in choices]
    if ask.include_usage:
        chunks.append({**head, "choices": [], "usage": usage(answer)})
    return [f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
