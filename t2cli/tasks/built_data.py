"""Data t2 builds from packaged copies and reads as `t2:NAME/FILE`: each kind of built data is one module
with a `built_file(source) -> Path`, registered in one line below. Any task reading a file accepts these
names (t2cli.tasks.sources.resolve_data_file); each file is built once under the t2 home."""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping, Sized
from importlib import metadata
from pathlib import Path
from types import ModuleType

from t2cli.errors import BadInputError

BUILT_PREFIX = "t2:"
BUILT_DATA = {
    "t2:math-mix/": "t2cli.tasks.math_mix",
    "t2:math-sources/": "t2cli.tasks.math_sources",
    "t2:science-mix/": "t2cli.tasks.science_mix",
}


def is_built(source: object) -> bool:
    return isinstance(source, str) and source.startswith(BUILT_PREFIX)


def built_data_file(source: str) -> Path:
    """The local file (or folder) of `t2:NAME/FILE`, built by NAME's module on first use."""
    return _builder(source).built_file(source)


def built_revision(source: str) -> str:
    """What `t2:NAME/FILE` is built from, for provenance: the package NAME's module reads, at its installed
    version (the data's sha256 says the rest, e.g. a science mix's ARC-Easy train)."""
    distribution = _builder(source).DISTRIBUTION
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"


def built_name(source: str, prefix: str, names: Collection[str]) -> str:
    """NAME of `t2:KIND/NAME` (`prefix` is `t2:KIND/`), or a one-line error listing the names there are."""
    name = source.removeprefix(prefix).rstrip("/")
    if not source.startswith(prefix) or name not in names:
        raise BadInputError(f"unknown data {source!r}; use {prefix}NAME with NAME one of: {', '.join(names)}")
    return name


def build_folder(kind: str, distribution: str) -> Path:
    """Where `t2:KIND/…` is built under the t2 home: one folder per installed version of the package it reads."""
    from t2cli.config import t2_home

    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        version = "missing"  # the builder's reader says how to install it
    return t2_home() / "data" / kind / f"{distribution}-{version}"


def report_digests(
    files: Mapping[str, Sized], digests: Mapping[str, str], expected: Mapping[str, str], reference: str
) -> int:
    """Print each built file's rows and sha256 against the recorded one (`reference` names where that came
    from); the exit code of a rebuild: 0 when all match."""
    width = max(map(len, digests), default=0) + 2
    same = True
    for name, digest in digests.items():
        match = digest == expected[name]
        same &= match
        print(
            f"{name:{width}s} {len(files[name]):5d} rows  sha256 {digest}  {'= ' + reference if match else 'DIFFERS'}"
        )
    print("all match" if same else "MISMATCH")
    return 0 if same else 1


def _builder(source: str) -> ModuleType:
    for prefix, module in BUILT_DATA.items():
        if source.startswith(prefix):
            return importlib.import_module(module)
    raise BadInputError(f"unknown data {source!r}; t2 builds {', '.join(f'{prefix}FILE' for prefix in BUILT_DATA)}")
