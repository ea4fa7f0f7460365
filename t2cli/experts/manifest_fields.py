"""The fields of an expert manifest and their checks: names and specs, targets, provenance, the files
an expert folder holds and their sizes. `t2cli.experts.manifest` assembles them into a Manifest."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError, IntegrityError
from t2cli.targets import ALL_ROLES, TargetMatrix

# Largest extra file (e.g. a PEFT adapter) a registry accepts.
MAX_EXTRA_BYTES = 4 << 30

Z_FILE = "z.safetensors"


MANIFEST_FILE = "manifest.yaml"


RESERVED_FILES = (Z_FILE, MANIFEST_FILE)


PROVENANCE_KINDS = ("trained", "composed", "transferred", "searched", "imported")


# Fields each provenance kind must carry, so an expert can always be explained and reproduced;
# any other fields are kept as written.
PROVENANCE_REQUIRED: dict[str, tuple[str, ...]] = {
    "trained": ("task", "data_sha256", "method", "hyperparameters", "steps", "seed"),
    "composed": ("recipe",),
    "transferred": ("source", "mapping", "strength"),
    "searched": ("recipe",),
    "imported": (),
}


VERSION_PATTERN = re.compile(r"[1-9][0-9]*")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")


MAX_NAME_LENGTH = 100


SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def check_name(name: str) -> str:
    """An expert name: lowercase letters, digits, `.`, `_`, `-`; it is also a folder name."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or NAME_PATTERN.fullmatch(name) is None:
        raise BadInputError(
            f"invalid expert name {name!r}; use lowercase letters, digits, '.', '_' or '-' "
            f"(starting with a letter or digit, at most {MAX_NAME_LENGTH} characters)"
        )
    return name


@dataclass(frozen=True)
class TargetInfo:
    """What the manifest records about one adapted matrix."""

    role: str
    layer: int
    rank: int


def target_infos(targets: Iterable[TargetMatrix]) -> dict[str, TargetInfo]:
    """Manifest targets for these matrices, keyed by parameter name."""
    return {t.name: TargetInfo(role=t.role, layer=t.layer, rank=t.rank) for t in targets}


def z_size_limit(targets: Mapping[str, TargetInfo]) -> int:
    """The most bytes z.safetensors of these targets can take: 4 per value plus a generous header."""
    return 8 + (64 << 10) + 512 * len(targets) + 4 * sum(info.rank for info in targets.values())


Refusal = Callable[[str], IntegrityError]


def parse_targets(entries: Any, bad: Refusal) -> dict[str, TargetInfo]:
    if not isinstance(entries, list) or not entries:
        raise bad("targets must be a non-empty list of {name, role, layer, rank}")
    targets: dict[str, TargetInfo] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"name", "role", "layer", "rank"}:
            raise bad(f"targets[{i}] must have exactly the keys name, role, layer, rank")
        name, role, layer, rank = entry["name"], entry["role"], entry["layer"], entry["rank"]
        if not isinstance(name, str) or not name:
            raise bad(f"targets[{i}].name must be a parameter name")
        if name in targets:
            raise bad(f"target {name!r} is listed twice")
        if role not in ALL_ROLES:
            raise bad(f"target {name!r} has unknown role {role!r}")
        if type(layer) is not int or layer < 0 or type(rank) is not int or rank < 1:
            raise bad(f"target {name!r} needs an integer layer >= 0 and rank >= 1")
        targets[name] = TargetInfo(role=role, layer=layer, rank=rank)
    return targets


def check_provenance(provenance: Any) -> dict[str, Any]:
    """A provenance dict with a known kind and that kind's required fields."""
    if not isinstance(provenance, dict) or provenance.get("kind") not in PROVENANCE_KINDS:
        raise BadInputError(f"provenance needs a kind, one of {', '.join(PROVENANCE_KINDS)}")
    absent = [key for key in PROVENANCE_REQUIRED[provenance["kind"]] if key not in provenance]
    if absent:
        raise BadInputError(f"{provenance['kind']} provenance lacks {', '.join(absent)}")
    return provenance


def parse_provenance(provenance: Any, bad: Refusal) -> dict[str, Any]:
    try:
        return check_provenance(provenance)
    except BadInputError as error:
        raise bad(str(error)) from None


def parse_metrics(metrics: Any, bad: Refusal) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise bad("metrics must map names to numbers")
    parsed = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"metric {key!r} must be a number")
        parsed[key] = float(value)
    return parsed


def parse_files(files: Any, bad: Refusal) -> dict[str, str]:
    if not isinstance(files, dict):
        raise bad("files must map file names to sha256 digests")
    for name, digest in files.items():
        if not is_extra_file_name(name):
            raise bad(f"files lists {name!r}, which is not a plain file name")
        if not isinstance(digest, str) or SHA256_PATTERN.fullmatch(digest) is None:
            raise bad(f"files[{name!r}] must be 64 lowercase hex digits")
    return dict(files)


def parse_sizes(sizes: Any, targets: dict[str, TargetInfo], files: dict[str, str], bad: Refusal) -> dict[str, int]:
    if not isinstance(sizes, dict) or set(sizes) != {Z_FILE, *files}:
        raise bad(f"sizes must give the byte size of {Z_FILE} and of each file in files")
    limits = {name: MAX_EXTRA_BYTES for name in files} | {Z_FILE: z_size_limit(targets)}
    for name, size in sizes.items():
        if type(size) is not int or not 0 < size <= limits[name]:
            raise bad(f"sizes[{name!r}] must be a whole number of bytes from 1 to {limits[name]:,}")
    return dict(sizes)


def is_extra_file_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name not in RESERVED_FILES
        and not name.startswith(".")
        and Path(name).name == name
        and name not in ("", "..")
    )


def parse_expert_spec(spec: str) -> tuple[str, int | None]:
    """`name` -> (name, None) meaning the latest version; `name@3` -> (name, 3)."""
    name, sep, version = spec.partition("@")
    check_name(name)
    if not sep:
        return name, None
    if VERSION_PATTERN.fullmatch(version) is None:
        raise BadInputError(f"invalid version in {spec!r}; write name@N with N = 1, 2, 3...")
    return name, int(version)
