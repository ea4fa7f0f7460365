"""How long a prompt may be: t2's character cap (checked as lines are read, before any model loads) and
the model's context window (checked on the tokenized prompts once the tokenizer is there, before any
generation), so an oversized request is refused in one line instead of running for minutes or aborting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from t2cli.engines.base import Prompt, encode_prompt
from t2cli.errors import BadInputError

if TYPE_CHECKING:
    from t2cli.models.loading import LoadedModel

# No model t2 runs reads more: even 128k tokens are ~500k characters of text.
MAX_PROMPT_CHARS = 1_000_000


def prompt_chars(prompt: Prompt) -> int:
    return len(prompt) if isinstance(prompt, str) else sum(len(message["content"]) for message in prompt)


def chars_problem(prompt: Prompt) -> str | None:
    """Why a prompt is too long to even tokenize, or None."""
    size = prompt_chars(prompt)
    if size <= MAX_PROMPT_CHARS:
        return None
    return f"the prompt is {size:,} characters, over t2's limit of {MAX_PROMPT_CHARS:,}; shorten it"


def context_length(loaded: LoadedModel) -> int | None:
    """The model's context window in tokens (max_position_embeddings of its text config), or None if unknown."""
    config: Any = getattr(loaded.model, "config", None)
    if config is None and loaded.source is not None:
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(loaded.source)
        except (OSError, ValueError):
            return None
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    length = getattr(text, "max_position_embeddings", None)
    return length if isinstance(length, int) and length > 0 else None


def check_prompt_tokens(prompts: Sequence[tuple[str, Prompt]], loaded: LoadedModel) -> None:
    """Refuse prompts (named, e.g. `line 3`) longer than the model's context window, as the model sees
    them (chat template included): all are checked, the first is named with how many more there are."""
    context = context_length(loaded)
    if context is None:
        return
    too_long = []
    for where, prompt in prompts:
        tokens = len(encode_prompt(loaded.tokenizer, prompt))
        if tokens > context:
            too_long.append((where, tokens))
    if too_long:
        where, tokens = too_long[0]
        more = f" (and {len(too_long) - 1} more)" if len(too_long) > 1 else ""
        raise BadInputError(
            f"{where}: the prompt is {tokens:,} tokens, longer than the {context:,}-token context of "
            f"{loaded.model_id}{more}; shorten it"
        )
