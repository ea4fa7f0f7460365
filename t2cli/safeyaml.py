"""The one YAML reader for files t2 did not write itself in this process (manifests, recipes, task specs).

PyYAML's safe loader still expands aliases (a few hundred bytes can stand for gigabytes: the "billion
laughs") and recurses once per nesting level. t2's files need neither, so anchors and aliases are refused,
nesting is capped, and the text is capped in size before any of it is parsed.
"""

from __future__ import annotations

from typing import Any

import yaml

from t2cli.errors import BadInputError, T2Error

MAX_YAML_BYTES = 1 << 20
MAX_DEPTH = 64

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def load_yaml(text: str, source: str, *, error: type[T2Error] = BadInputError, limit: int = MAX_YAML_BYTES) -> Any:
    """Parse YAML text into plain data; every refusal is `error` with a one-line reason naming `source`."""
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise error(f"{source} is larger than {limit:,} bytes; t2 reads YAML files up to that size")
    try:
        _check_events(text, source, error)
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{source} is not valid YAML{line}; fix the syntax") from None
    except RecursionError:
        raise error(f"{source} is nested too deeply; t2 reads at most {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as problem:  # e.g. an integer of more digits than Python converts
        raise error(f"{source} holds a value out of range ({str(problem).split(';')[0]}); fix it") from None


def _check_events(text: str, source: str, error: type[T2Error]) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise error(f"{source} uses YAML anchors or aliases (& or *), which t2 refuses; write the values out")
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise error(f"{source} is nested deeper than {MAX_DEPTH} levels; flatten it")
        elif isinstance(event, _CLOSE):
            depth -= 1


class _PlainDumper(yaml.SafeDumper):
    """Writes every value out in full: no anchors for repeated objects, which load_yaml would refuse."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """YAML text load_yaml reads back: block style, keys in the given order, no anchors."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=120)
