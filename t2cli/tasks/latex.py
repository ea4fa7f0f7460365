r"""MATH-style answers: the last \boxed{...} of a text and a normaliser for comparing LaTeX answers."""

from __future__ import annotations

import re
from fractions import Fraction

_BOX = re.compile(r"\\(?:boxed|fbox)")
_UNITS = (
    "units?|degrees?|cm|centimeters?|meters?|metres?|km|kilometers?|inch(?:es)?|feet|foot|ft|yards?|miles?"
    "|hours?|minutes?|seconds?|days?|weeks?|years?|dollars?|cents?|pounds?|grams?|kg|mph|sq|square|cubic"
)
_TEXT = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm)\{([^{}]*)\}")
_TRAILING_UNITS = re.compile(rf"(?:\s*\b(?:{_UNITS})\b(?:\^\{{?\d\}}?)?)+\s*$", re.IGNORECASE)
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad|~|\s+")
_FRACTION = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}")
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_VARIABLE_PREFIX = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?=")


def last_boxed(text: str) -> str | None:
    r"""Content of the last \boxed{...} or \fbox{...} (braces may nest; `\boxed 5` also works), else None.

    A last box with unbalanced braces (a truncated generation) gives None rather than an earlier box.
    """
    starts = [match.end() for match in _BOX.finditer(text)]
    if not starts:
        return None
    rest = text[starts[-1] :]
    if not rest.lstrip().startswith("{"):
        loose = re.match(r"\s+([^\s$]+)", rest)
        return loose.group(1) if loose else None
    depth = 0
    opening = rest.index("{")
    for position in range(opening, len(rest)):
        if rest[position] == "{":
            depth += 1
        elif rest[position] == "}":
            depth -= 1
            if depth == 0:
                return rest[opening + 1 : position]
    return None


def normalize_answer(answer: str) -> str:
    """A canonical string: no spacing, $, units, degrees, \\left/\\right; \\dfrac -> \\frac{a}{b}; a/b -> frac."""
    text = answer.strip().replace("\\!", "")
    for old, new in (
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("°", ""),
        ("\\degree", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\%", ""),
        ("%", ""),
        ("{,}", ""),
    ):
        text = text.replace(old, new)
    text = _TEXT.sub(_unwrap_text, text).strip()
    text = _TRAILING_UNITS.sub("", text).strip() or text  # a bare unit word stays an answer
    text = _SPACING.sub("", text).rstrip(".")
    text = _VARIABLE_PREFIX.sub("", text, count=1)
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", text)
    text = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", text)
    text = re.sub(r"^(-?\d+)/(\d+)$", r"\\frac{\1}{\2}", text)
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    text = re.sub(r"(?<![\d}])\.(\d)", r"0.\1", text)
    text = re.sub(r"(\d\.\d*?[1-9])0+(?!\d)", r"\1", text)
    return re.sub(r"(\d)\.0+(?!\d)", r"\1", text)


def answers_match(candidate: str, reference: str) -> bool:
    """Equal after normalisation, or equal as numbers when both are plain numbers or fractions."""
    left, right = normalize_answer(candidate), normalize_answer(reference)
    if left == right:
        return True
    left_value, right_value = _as_fraction(left), _as_fraction(right)
    if left_value is None or right_value is None:
        return False
    return abs(left_value - right_value) <= Fraction(1, 10**6) * max(abs(left_value), abs(right_value))


def _unwrap_text(match: re.Match[str]) -> str:
    # Keep a space before the content so a unit word stays separable from the number before it.
    return " " + match.group(1)


def _as_fraction(text: str) -> Fraction | None:
    if _DECIMAL.fullmatch(text):
        return Fraction(text)
    fraction = _FRACTION.fullmatch(text)
    if fraction is None or int(fraction[3]) == 0:
        return None
    value = Fraction(int(fraction[2]), int(fraction[3]))
    return -value if fraction[1] else value
