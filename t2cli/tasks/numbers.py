"""Numeric answers: the final number of a completion and a tolerant comparison (GSM8K, `number` specs)."""

from __future__ import annotations

import re
from decimal import Decimal

from t2cli.tasks.latex import last_boxed

RELATIVE_TOLERANCE = Decimal("1e-6")
# A sign counts only when it is not a binary minus ("3-5" is 3 and 5); "1,234" is one number but
# "1,2,3" is three; "$" and a trailing "%" or "." are ignored.
_NUMBER = re.compile(
    r"(?:(?<![\w)\].])(?P<sign>[-−]))?\$?(?<![\d.])"
    r"(?P<digits>\d{1,3}(?:,\d{3}(?!\d))+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)


def numbers_in(text: str) -> list[Decimal]:
    values = []
    for match in _NUMBER.finditer(text):
        value = Decimal(match["digits"].replace(",", ""))
        values.append(-value if match["sign"] else value)
    return values


def parse_number(text: str) -> Decimal | None:
    """The last number in `text` (a reference answer such as "1,234" or "-5.0"), else None."""
    values = numbers_in(text)
    return values[-1] if values else None


def final_number(completion: str) -> Decimal | None:
    r"""The answer of a completion: the number in the last \boxed{}, else the first number after the last
    "####", else the last number anywhere. A box without a number means no answer."""
    boxed = last_boxed(completion)
    if boxed is not None:
        return parse_number(boxed)
    if "####" in completion:
        after = numbers_in(completion.rsplit("####", 1)[1])
        if after:
            return after[0]
    return parse_number(completion)


def same_number(candidate: Decimal | None, reference: Decimal | None) -> bool:
    if candidate is None or reference is None:
        return False
    return abs(candidate - reference) <= RELATIVE_TOLERANCE * max(abs(candidate), abs(reference))


def number_reward(completion: str, reference: str) -> float:
    """+1 when the completion's final number equals the reference number, else -1."""
    return 1.0 if same_number(final_number(completion), parse_number(reference)) else -1.0
