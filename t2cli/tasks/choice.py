"""Multiple-choice answers: which lettered choice a completion picks (ARC, `choice` specs)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

LETTERS = "ABCDE"

# "The answer is (B)", "Answer: d", "answer: **C**", "the correct option is C".
_EXPLICIT = re.compile(
    r"\b(?:answer|correct (?:option|choice))\b(?:\s+(?:is|would be|=))?(?:\s+(?:option|choice))?"
    r"[\s:=*()\[\]\-]*\b(?P<letter>[A-Ea-e])\b(?P<after>.?)",
    re.IGNORECASE,
)
# "(B)", "B)", "**C**", "[D]", or "C." / "C:" at the start of a line.
_MARKED = re.compile(
    r"\((?P<a>[A-E])\)|(?<![\w(])(?P<b>[A-E])\)|\*\*(?P<c>[A-E])\*\*|\[(?P<d>[A-E])\]|^\s*(?P<e>[A-E])[.:]",
    re.MULTILINE,
)
# A capital letter standing alone; "A" followed by a lower-case word is the article.
_BARE = re.compile(r"(?<![\w'°])(?P<letter>[B-E]|A(?!\s+[a-z]))(?![\w'])")
_ONLY_LETTER = re.compile(r"\W*(?P<letter>[A-Ea-e])\W*")


def extract_choice(completion: str, count: int, texts: Sequence[str] = ()) -> int | None:
    """Index of the chosen choice among `count` lettered ones (A..E), or None when there is no clear pick.

    In order: an explicit answer statement (several different ones: no answer); a completion that is just
    a letter or just one choice's text; marked letters such as "(B)" or "**C**", then bare capitals (the
    most mentioned wins, a tie is no answer); finally the one choice whose text the completion contains.
    """
    letters = LETTERS[:count]
    valid = set(letters)
    explicit = {
        match["letter"].upper()
        for match in _EXPLICIT.finditer(completion)
        if match["letter"].isupper() or match["after"] in ("", ".", ")", "*", "]", ":")
    } & valid
    if explicit:
        return letters.index(explicit.pop()) if len(explicit) == 1 else None
    only = _ONLY_LETTER.fullmatch(completion)
    if only and only["letter"].upper() in valid:
        return letters.index(only["letter"].upper())
    said, plain_texts = _plain(completion), [_plain(text) for text in texts]
    if said and said in plain_texts:
        return plain_texts.index(said) if plain_texts.count(said) == 1 else None
    for pattern in (_MARKED, _BARE):
        mentions = Counter(
            letter for match in pattern.finditer(completion) for letter in match.groups() if letter in valid
        ).most_common(2)
        if mentions:
            if len(mentions) == 2 and mentions[0][1] == mentions[1][1]:
                return None
            return letters.index(mentions[0][0])
    found = [index for index, text in enumerate(plain_texts) if text and re.search(rf"\b{re.escape(text)}\b", said)]
    # "salt water" also contains "water": keep only choices not inside another mentioned one.
    found = [i for i in found if not any(i != j and plain_texts[i] in plain_texts[j] for j in found)]
    return found[0] if len(found) == 1 else None


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
