"""The fields of an expert manifest and their checks: names and specs, targets, provenance, a probe's
settings, the files an expert folder holds and their sizes. `t2cli.experts.manifest` assembles them into a
Manifest."""

from __future__ import annotations

import math
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


def z_size_limit(targets: Mapping[str, TargetInfo], probe: ProbeInfo | None = None) -> int:
    """The most bytes z.safetensors of these targets (or of this probe's head) can take: 4 per value plus a
    generous header."""
    values = sum(info.rank for info in targets.values())
    if probe is not None:
        values += sum(math.prod(shape) for shape in probe_tensor_shapes(probe).values())
    return 8 + (64 << 10) + 512 * len(targets) + 4 * values


# What a registry version is: an expert (z vectors over the model's matrices) or a probe (a small head
# over the base model's hidden states at one layer, which routes requests; t2cli.adapt.probe).
KINDS = ("expert", "probe")


@dataclass(frozen=True)
class ProbeInfo:
    """A probe's settings: the layer whose hidden states it reads (after that many decoder layers), the
    request tokens it reads (the first N), the hidden size, the categories it names (name, description)
    in the order of its head's rows, and the confidence under which a request keeps the base weights."""

    layer: int
    tokens: int
    hidden_size: int
    categories: tuple[tuple[str, str], ...]
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "tokens": self.tokens,
            "hidden_size": self.hidden_size,
            "categories": [list(category) for category in self.categories],
            "threshold": self.threshold,
        }


def probe_tensor_shapes(probe: ProbeInfo) -> dict[str, tuple[int, ...]]:
    """The tensors of a probe's head (its z.safetensors): standardisation of the pooled state (mean,
    scale), the logistic regression (weight, bias) and the calibration temperature."""
    classes, width = len(probe.categories), probe.hidden_size
    return {"mean": (width,), "scale": (width,), "weight": (classes, width), "bias": (classes,), "temperature": ()}


def parse_probe(entry: Any, bad: Refusal) -> ProbeInfo:
    keys = {"layer", "tokens", "hidden_size", "categories", "threshold"}
    if not isinstance(entry, dict) or set(entry) != keys:
        raise bad(f"probe must have exactly the keys {', '.join(sorted(keys))}")
    for key in ("layer", "tokens", "hidden_size"):
        if type(entry[key]) is not int or entry[key] < 1:
            raise bad(f"probe.{key} must be an integer >= 1")
    categories = entry["categories"]
    if (
        not isinstance(categories, list)
        or len(categories) < 2
        or not all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(part, str) and part for part in c)
            for c in categories
        )
        or len({c[0] for c in categories}) != len(categories)
    ):
        raise bad("probe.categories must list at least two distinct [name, description] pairs")
    threshold = entry["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise bad("probe.threshold must be a number in [0, 1)")
    return ProbeInfo(
        layer=entry["layer"],
        tokens=entry["tokens"],
        hidden_size=entry["hidden_size"],
        categories=tuple((name, description) for name, description in categories),
        threshold=float(threshold),
    )


Refusal = Callable[[str], IntegrityError]


def parse_targets(entries: Any, bad: Refusal, kind: str = "expert") -> dict[str, TargetInfo]:
    if kind == "probe":
        if entries != []:
            raise bad("a probe adapts no matrices: its targets must be an empty list")
        return {}
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


def parse_sizes(
    sizes: Any, targets: dict[str, TargetInfo], files: dict[str, str], bad: Refusal, probe: ProbeInfo | None = None
) -> dict[str, int]:
    if not isinstance(sizes, dict) or set(sizes) != {Z_FILE, *files}:
        raise bad(f"sizes must give the byte size of {Z_FILE} and of each file in files")
    limits = {name: MAX_EXTRA_BYTES for name in files} | {Z_FILE: z_size_limit(targets, probe)}
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
