"""One registry pattern for every kind of plug-in: tasks, routers, engines and export formats.

Each kind is a `PluginRegistry`: entries by name, each one object (a class) in a file of its own.
t2's own entries are one line each, `name: "module:attribute"`, imported on first use; other packages
add theirs through the kind's entry-point group (`t2cli.tasks`, `t2cli.routers`, `t2cli.engines`,
`t2cli.exporters`) in their package metadata:

    [project.entry-points."t2cli.routers"]
    keyword = "my_package.keyword:KeywordRouter"

A plug-in that cannot be loaded (a missing module, an error on import, a name t2 already uses) is one
`warning:` line on stderr and a problem in `t2 doctor`, never a crash: the other entries keep working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from t2cli.errors import NotFoundError

T = TypeVar("T")

BUILT_IN = "t2cli"


@dataclass(frozen=True)
class PluginInfo:
    """Where one entry comes from: t2 itself or an installed distribution, and whether it loads."""

    kind: str  # "router", "engine", ...
    name: str
    target: str  # module:attribute
    origin: str  # "t2cli", or the distribution that declares it: "NAME VERSION"
    error: str | None = None  # why it does not load (None: it does, or it was not tried yet)


def _import(target: str) -> Any:
    module, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module)
    for part in filter(None, attribute.split(".")):
        value = getattr(value, part)
    return value


class PluginRegistry(Generic[T]):
    """The entries of one plug-in kind: built-ins first, then entry points of `group`, by name.

    Entry points are read once, on first use (`refresh` reads them again: a package installed since).
    Loaded entries are kept, so each plug-in module is imported once and each failure warned about once.
    """

    def __init__(self, kind: str, group: str, built_in: Mapping[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._built_in = dict(built_in)
        self._infos: dict[str, PluginInfo] | None = None
        self._loaded: dict[str, T] = {}

    def refresh(self) -> None:
        """Forget what was read, so installed entry points are looked up again."""
        self._infos = None
        self._loaded.clear()

    def _entries(self) -> dict[str, PluginInfo]:
        if self._infos is None:
            infos = {name: PluginInfo(self.kind, name, target, BUILT_IN) for name, target in self._built_in.items()}
            for point in importlib.metadata.entry_points(group=self.group):
                dist = point.dist
                origin = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "unknown distribution"
                if point.name in infos:
                    taken = infos[point.name].origin
                    self._warn(f"{origin} declares {self.kind} {point.name!r}, which {taken} already has; ignored")
                    continue
                infos[point.name] = PluginInfo(self.kind, point.name, point.value, origin)
            self._infos = infos
        return self._infos

    def _warn(self, message: str) -> None:
        sys.stderr.write(f"warning: {message}\n")

    def names(self) -> list[str]:
        """Every entry's name, built-ins first (nothing is imported)."""
        return list(self._entries())

    def __contains__(self, name: object) -> bool:
        return name in self._entries()

    def get(self, name: str) -> T:
        """The entry called `name`, imported on first use."""
        if name in self._loaded:
            return self._loaded[name]
        info = self._entries().get(name)
        if info is None:
            raise NotFoundError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        if info.error is not None:
            raise NotFoundError(f"{self.kind} {name!r} ({info.origin}) does not load: {info.error}")
        try:
            value = _import(info.target)
        except Exception as error:  # a third-party module may fail in any way; t2 keeps running
            problem = f"{type(error).__name__}: {error}".strip()
            self._entries()[name] = PluginInfo(info.kind, name, info.target, info.origin, problem)
            if info.origin == BUILT_IN:
                raise
            self._warn(f"{self.kind} plug-in {name!r} from {info.origin} ({info.target}) does not load: {problem}")
            raise NotFoundError(f"{self.kind} {name!r} ({info.origin}) does not load: {problem}") from None
        self._loaded[name] = value
        return value

    def loaded(self) -> Iterator[tuple[str, T]]:
        """(name, entry) of every entry that loads; the others are warned about once and skipped."""
        for name in self.names():
            try:
                yield name, self.get(name)
            except NotFoundError:
                continue

    def infos(self) -> list[PluginInfo]:
        """Every entry with its origin, each loaded once to report whether it works (`t2 doctor`)."""
        dict(self.loaded())
        return list(self._entries().values())
