"""Text as it is generated: each row's new text handed to a callback while its batch decodes.

An engine that streams (`Engine.streams`) calls `on_text(row, piece)` from inside `generate`, `row` being
the prompt's index in that call. A row's pieces concatenate to exactly its `Generation.text`, because a
piece is only text that can no longer change: never a partial UTF-8 character (decoded as U+FFFD), never
trailing whitespace (a tokenizer's clean-up may still merge it with what follows), never what could
still become a stop string (which the answer cuts), never anything past EOS; what is held back follows
once the row's generation is final (`finish`).
"""

from __future__ import annotations

import string
from collections.abc import Collection, Sequence
from typing import Any

from t2cli.engines.base import OnText, cut_at_stop

# U+FFFD is what a token ending inside a UTF-8 character decodes to, until the next token completes it.
HELD_AT_END = string.whitespace + "\ufffd"


class RowText:
    """One row's text so far, and how much of it has been handed on."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.shown = ""
        self.done = False  # EOS or a stop string: nothing more comes until `finish`

    def update(self, text: str) -> str:
        """The new final part of the row's text so far ('' when nothing new is certain)."""
        if self.done:
            return ""
        cut, stopped = cut_at_stop(text, self.stop)
        if stopped:
            self.done = True
        else:
            cut = cut[: len(cut) - self._pending_stop(cut)].rstrip(HELD_AT_END)
        return self._show(cut)

    def finish(self, text: str) -> str:
        """The rest of the row's final text."""
        self.done = True
        return self._show(text)

    def _show(self, text: str) -> str:
        if len(text) <= len(self.shown) or not text.startswith(self.shown):
            return ""
        piece, self.shown = text[len(self.shown) :], text
        return piece

    def _pending_stop(self, text: str) -> int:
        """The length of the longest end of `text` that a stop string starts with."""
        ends = (k for s in self.stop for k in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:k]))
        return max(ends, default=0)


class TokenStream:
    """transformers' streamer protocol (`put`, `end`) for a whole batch: each decoding step's tokens,
    one per row, are decoded row by row, and row r's new text goes to `on_text(prompts[r], piece)`
    (`prompts`: the index of each row's prompt in the `generate` call)."""

    def __init__(
        self, tokenizer: Any, prompts: Sequence[int], eos_ids: Collection[int], stop: Sequence[str], on_text: OnText
    ) -> None:
        self.tokenizer, self.prompts, self.eos_ids, self.on_text = tokenizer, list(prompts), eos_ids, on_text
        self.tokens: list[list[int]] = [[] for _ in self.prompts]
        self.texts = [RowText(stop) for _ in self.prompts]
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate hands over the prompt ids first
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.tokens), -1)[:, -1].tolist()):
            text = self.texts[row]
            if text.done:
                continue
            if token in self.eos_ids:
                text.done = True
                continue
            self.tokens[row].append(token)
            self._send(row, text.update(self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)))

    def end(self) -> None:
        """Nothing to flush: a row's held-back text follows with `finish`, once its generation is final."""

    def finish(self, row: int, text: str) -> None:
        self._send(row, self.texts[row].finish(text))

    def _send(self, row: int, piece: str) -> None:
        if piece:
            self.on_text(self.prompts[row], piece)
