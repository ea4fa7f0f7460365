"""Answers in the OpenAI format: a completion object, or its server-sent events, plus what t2 adds.

Every response names the expert that answered as its `model` (`base` for the base weights) and carries a
`t2` object: `expert` (null for the base), `alpha` (a mixture's α per bank expert), `label`, `confidence`
(pass 1's probability for the chosen category, `auto` requests only) and `path`. The same facts travel in
headers (`X-T2-Expert`, `X-T2-Confidence`, `X-T2-Alpha`) for clients that read no extra fields. A streamed
answer's headers go out once pass 1 has routed it; then (chat) a chunk with the assistant's role, one
chunk per piece of text as the engine generates it, the finish chunk (whose `t2` adds the `path` pass 2
took), an optional usage chunk, and `[DONE]`; a generation that fails midway ends with an error event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from t2cli.adapt.routers import Decision
    from t2cli.serve.schema import Ask
    from t2cli.serve.service import Answer

OBJECTS = {"chat": ("chat.completion", "chat.completion.chunk"), "completion": ("text_completion", "text_completion")}
DONE = "data: [DONE]\n\n"


def routing_fields(decision: Decision, confidence: float | None) -> dict[str, Any]:
    """What pass 1 decided: the `t2` object before the answer is generated."""
    return {"expert": decision.expert, "alpha": decision.alpha, "label": decision.label, "confidence": confidence}


def t2_fields(answer: Answer) -> dict[str, Any]:
    return routing_fields(answer.decision, answer.confidence) | {"path": answer.path}


def headers(decision: Decision, confidence: float | None) -> dict[str, str]:
    fields = {"X-T2-Expert": decision.expert or "base"}
    if confidence is not None:
        fields["X-T2-Confidence"] = f"{confidence:.4f}"
    if decision.alpha:
        fields["X-T2-Alpha"] = json.dumps(decision.alpha, separators=(",", ":"))
    return fields


def usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.generation.prompt_tokens, len(answer.generation.token_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(ask: Ask, answer: Answer, request_id: str, created: int) -> dict[str, Any]:
    """The whole answer as one JSON object."""
    text, finish = answer.generation.text, answer.generation.finish_reason
    if ask.endpoint == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    head = {"id": request_id, "object": OBJECTS[ask.endpoint][0], "created": created}
    body = {"model": answer.decision.expert or "base", "choices": [choice], "usage": usage(answer)}
    return {**head, **body, "t2": t2_fields(answer)}


def event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


@dataclass(frozen=True)
class StreamHead:
    """What every chunk of one streamed answer repeats, and how each kind of chunk is spelled."""

    ask: Ask
    request_id: str
    created: int
    decision: Decision
    confidence: float | None

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        head = {"id": self.request_id, "object": OBJECTS[self.ask.endpoint][1], "created": self.created}
        return event({**head, "model": self.decision.expert or "base", "choices": choices, **extra})

    def _choice(self, text: str | None, finish: str | None) -> dict[str, Any]:
        if self.ask.endpoint == "chat":
            return {"index": 0, "delta": {} if text is None else {"content": text}, "finish_reason": finish}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

    def opening(self) -> list[str]:
        """What is sent as soon as the request is routed: a chat answer's role."""
        if self.ask.endpoint != "chat":
            return []
        choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        return [self._chunk([choice], t2=routing_fields(self.decision, self.confidence))]

    def text(self, piece: str) -> str:
        return self._chunk([self._choice(piece, None)], t2=routing_fields(self.decision, self.confidence))

    def closing(self, answer: Answer) -> list[str]:
        """The finish chunk, the usage chunk when asked for, and [DONE]."""
        chunks = [self._chunk([self._choice(None, answer.generation.finish_reason)], t2=t2_fields(answer))]
        if self.ask.include_usage:
            chunks.append(self._chunk([], usage=usage(answer)))
        return [*chunks, DONE]


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_events(message: str, kind: str) -> list[str]:
    """How a stream whose 200 is already sent reports that its generation failed."""
    return [event(error_body(message, kind)), DONE]
