"""OpenAI request bodies read into what t2 answers: the model asked for, one prompt, and its sampling.

Bodies are read by hand rather than through pydantic models so that every refusal is one line naming
the field and the fix (a 400). Prompts go through `t2 run`'s own line validation (`line_from_data`): a
`/v1/completions` prompt is a user request, exactly as a `{"prompt": ...}` line of `t2 run` is, and chat
messages are checked as its `messages` lines are. Sampling is greedy unless the request names a
temperature, so an answer equals `t2 run`'s for the same prompt and expert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from t2cli.adapt.runio import InputLine, line_from_data
from t2cli.engines.base import Prompt, Sampling
from t2cli.errors import BadInputError
from t2cli.fsutil import JsonProblem, json_loads

if TYPE_CHECKING:
    from t2cli.serve.streaming import Listener

MODEL_AUTO = "auto"  # pass 1 picks the expert with the server's strategy
MODEL_BASE = "base"  # the base weights
MAX_STOPS = 4  # as OpenAI's API


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_tokens: int = 1024  # the most `max_tokens` a request may name
    default_tokens: int = 256  # when it names none (`t2 run`'s --max-new-tokens default), at most max_tokens
    max_request_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise BadInputError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.max_request_bytes < 1024:
            raise BadInputError(f"--max-request-bytes must be >= 1024, got {self.max_request_bytes}")


@dataclass(frozen=True)
class Ask:
    """One request to answer: `chat` or `completion`, the model (auto, base or an expert spec), the prompt."""

    endpoint: str
    model: str
    prompt: Prompt
    sampling: Sampling
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage counts
    # A streamed request's: told where pass 1 sent it and each piece of its answer as it is generated.
    listener: Listener | None = field(default=None, compare=False, repr=False)


def parse_chat(body: bytes, limits: Limits) -> Ask:
    """A `/v1/chat/completions` body; BadInputError says what is wrong with it."""
    data = _object(body)
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise BadInputError("`messages` must be a non-empty list of {role, content} objects")
    line = _line({"messages": [_message(m, i) for i, m in enumerate(messages)]})
    tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    return _ask("chat", data, line.prompt, tokens, limits)


def parse_completion(body: bytes, limits: Limits) -> Ask:
    """A `/v1/completions` body: `prompt` is one string (or a list holding one)."""
    data = _object(body)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadInputError("`prompt` must be one string; send one request per prompt")
    return _ask("completion", data, _line({"prompt": prompt}).prompt, data.get("max_tokens"), limits)


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json_loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInputError("the request body is not UTF-8; send JSON") from None
    except JsonProblem as problem:
        raise BadInputError(f"the request body is {problem}; send one JSON object") from None
    if not isinstance(data, dict):
        raise BadInputError(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def _message(message: Any, index: int) -> Any:
    """A chat message with its content as one string: a list of text parts is joined."""
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return message
    parts = message["content"]
    if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in parts):
        raise BadInputError(f"messages[{index}].content: only text parts ({{type: text, text}}) are supported")
    return {**message, "content": "".join(p["text"] for p in parts)}


def _line(data: dict[str, Any]) -> InputLine:
    parsed = line_from_data(data, 1)
    if not isinstance(parsed, InputLine):
        raise BadInputError(parsed.message)
    return parsed


def _ask(endpoint: str, data: dict[str, Any], prompt: Prompt, tokens: Any, limits: Limits) -> Ask:
    model = data.get("model", MODEL_AUTO)
    if not isinstance(model, str) or not model.strip():
        raise BadInputError(f"`model` must be {MODEL_AUTO}, {MODEL_BASE} or an expert name[@version]")
    if data.get("n", 1) != 1:
        raise BadInputError("`n` must be 1: t2 answers one completion per request")
    stream = data.get("stream", False)
    options = data.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise BadInputError("`stream` must be true or false, and `stream_options` an object")
    return Ask(
        endpoint,
        model.strip(),
        prompt,
        _sampling(data, tokens, limits),
        stream=stream,
        include_usage=options.get("include_usage") is True,
    )


def _number(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInputError(f"`{key}` must be a number, got {value!r}")
    return float(value)


def _sampling(data: dict[str, Any], tokens: Any, limits: Limits) -> Sampling:
    if tokens is None:
        tokens = min(limits.default_tokens, limits.max_tokens)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise BadInputError(f"`max_tokens` must be a whole number >= 1, got {tokens!r}")
    if tokens > limits.max_tokens:
        raise BadInputError(f"`max_tokens` {tokens} is over this server's limit of {limits.max_tokens}; ask for fewer")
    temperature = _number(data, "temperature", 0.0)
    if temperature > 2:
        raise BadInputError(f"`temperature` must be in [0, 2], got {temperature}")
    stop = data.get("stop")
    stops = (stop,) if isinstance(stop, str) else stop if stop is not None else ()
    if not isinstance(stops, list | tuple) or len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
        raise BadInputError(f"`stop` must be a string or a list of at most {MAX_STOPS} strings")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadInputError(f"`seed` must be a whole number, got {seed!r}")
    return Sampling(
        max_new_tokens=tokens,
        temperature=temperature,
        top_p=_number(data, "top_p", 1.0),
        stop=tuple(stops),
        seed=seed,
    )
