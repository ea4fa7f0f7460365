"""The expert manifest: its schema, parsing and validation, and the checks that decide whether experts mix.

An expert is a folder: `z.safetensors` (one 1-D z per targeted matrix, keyed by the model's own
parameter name) and `manifest.yaml` (what the z is, for which base model, and how it was made).
A probe (`kind: probe`, a router's head over the base model's hidden states) is the same folder: its
`z.safetensors` holds the head's tensors, its manifest no targets and a `probe` section (layer, tokens,
categories, threshold); the registry stores, verifies, pushes and pulls it like an expert.
The format is described in docs/format.md; each field's own checks are in t2cli.experts.manifest_fields.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import yaml

from t2cli.errors import BadInputError, IntegrityError
from t2cli.experts.manifest_fields import (
    KINDS,
    SHA256_PATTERN,
    ProbeInfo,
    TargetInfo,
    check_name,
    check_provenance,
    parse_files,
    parse_metrics,
    parse_probe,
    parse_provenance,
    parse_sizes,
    parse_targets,
    target_infos,
)
from t2cli.safeyaml import dump_yaml, load_yaml
from t2cli.svf import check_rule
from t2cli.targets import TargetMatrix

# 2: the manifest carries `sizes` and `manifest_sha256`, a checksum of all its other fields.
FORMAT_VERSION = 2

DIGEST_FIELD = "manifest_sha256"

# Manifests are a few tens of kB even for large models (one short entry per adapted matrix).
MAX_MANIFEST_BYTES = 1 << 20

RESIGN_COMMAND = "python -m t2cli.experts.resign"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Manifest:
    """Everything about an expert except its z values. Round-trips through `to_yaml`/`from_yaml`."""

    name: str
    base_model: str
    base_fingerprint: str
    targets: dict[str, TargetInfo]
    svf_rule: str
    provenance: dict[str, Any]
    # 0 until a registry publishes it; the registry assigns 1, 2, 3... per name.
    version: int = 0
    task: str | None = None
    description: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    created: str = ""
    t2_version: str = ""
    # sha256 of z.safetensors and of each extra file; filled in by save_expert_files.
    sha256: str = ""
    files: dict[str, str] = field(default_factory=dict)
    # Byte size of z.safetensors and of each extra file, so a copy can stop at the recorded size.
    sizes: dict[str, int] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    kind: str = "expert"  # or "probe" (then `probe` holds its settings and `targets` is empty)
    probe: ProbeInfo | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def main_metric(self) -> tuple[str, float] | None:
        """The first metric: trainers record the one they select checkpoints by first."""
        return next(iter(self.metrics.items()), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in a human reading order; targets as a compact list."""
        # An expert's manifest names no kind, so every expert manifest written before probes keeps its digest.
        kind = {} if self.kind == "expert" else {"kind": self.kind}
        probe = {} if self.probe is None else {"probe": self.probe.to_dict()}
        return {
            "format_version": self.format_version,
            **kind,
            "name": self.name,
            "version": self.version,
            "base_model": self.base_model,
            "base_fingerprint": self.base_fingerprint,
            "task": self.task,
            "description": self.description,
            "svf_rule": self.svf_rule,
            "created": self.created,
            "t2_version": self.t2_version,
            "sha256": self.sha256,
            "files": dict(self.files),
            "sizes": dict(self.sizes),
            "metrics": dict(self.metrics),
            "provenance": self.provenance,
            **probe,
            "targets": [{"name": name, **asdict(info)} for name, info in self.targets.items()],
        }

    def to_yaml(self) -> str:
        """The manifest as written to disk, with `manifest_sha256` over every other field."""
        data = self.to_dict()
        try:
            body = dump_yaml(data)
        except yaml.YAMLError as error:
            raise BadInputError(
                f"manifest of {self.name!r} holds a value YAML cannot store ({error}); use plain numbers, strings, "
                "lists and dicts in provenance and metrics"
            ) from None
        # The digest is taken over the data as a reader will parse it, so both sides hash the same values.
        data[DIGEST_FIELD] = manifest_digest(
            load_yaml(body, f"manifest of {self.name!r}"), f"manifest of {self.name!r}"
        )
        return dump_yaml(data)

    @classmethod
    def from_yaml(cls, text: str, source: str = "manifest") -> Manifest:
        data = load_yaml(text, source, error=IntegrityError, limit=MAX_MANIFEST_BYTES)
        return _parse_manifest(data, source)


def manifest_digest(data: Mapping[str, Any], source: str) -> str:
    """sha256 of a manifest's fields (all but manifest_sha256) in a canonical JSON form."""
    fields = {key: value for key, value in data.items() if key != DIGEST_FIELD}
    try:
        text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        raise IntegrityError(
            f"{source}: keys must be strings; restore the expert from the registry or a remote"
        ) from None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_REQUIRED_FIELDS = (
    "format_version", "name", "version", "base_model", "base_fingerprint", "svf_rule",
    "created", "t2_version", "sha256", "provenance", "targets",
)  # fmt: skip


_OPTIONAL_FIELDS = ("task", "description", "metrics", "files", "sizes", "kind", "probe", DIGEST_FIELD)


def _parse_manifest(data: Any, source: str) -> Manifest:
    """Validate plain data into a Manifest; every refusal names the field and the file."""

    def bad(reason: str) -> IntegrityError:
        return IntegrityError(f"{source}: {reason}; restore the expert from the registry or a remote")

    if not isinstance(data, dict):
        raise bad("is not a mapping of fields")
    fmt = data.get("format_version")
    if type(fmt) is int and fmt > FORMAT_VERSION:
        raise BadInputError(
            f"{source} has format version {fmt}, newer than this t2 reads ({FORMAT_VERSION}); "
            "upgrade: pip install -U t2cli"
        )
    unknown = sorted(set(data) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}")
    missing = [name for name in _REQUIRED_FIELDS if name not in data]
    if missing:
        raise bad(f"missing field {missing[0]!r}")
    if type(fmt) is not int or fmt < 1:
        raise bad(f"format_version must be a positive integer, got {fmt!r}")
    if fmt < FORMAT_VERSION:
        raise IntegrityError(
            f"{source} is a format-{fmt} manifest, which has no checksum of its own; if you trust it, re-sign its "
            f"folder with `{RESIGN_COMMAND} FOLDER` (checks its files first), or re-pull the expert"
        )
    if not isinstance(data.get(DIGEST_FIELD), str) or data[DIGEST_FIELD] != manifest_digest(data, source):
        raise bad(f"{DIGEST_FIELD} does not match its fields (edited by hand?)")
    if type(data["version"]) is not int or data["version"] < 0:
        raise bad(f"version must be an integer >= 0, got {data['version']!r}")
    for key in ("name", "base_model", "t2_version"):
        if not isinstance(data[key], str) or not data[key]:
            raise bad(f"{key} must be a non-empty string")
    try:
        check_name(data["name"])
        check_rule(data["svf_rule"])
    except BadInputError as error:
        raise bad(str(error).split(";")[0]) from None
    for key in ("base_fingerprint", "sha256"):
        if not isinstance(data[key], str) or SHA256_PATTERN.fullmatch(data[key]) is None:
            raise bad(f"{key} must be 64 lowercase hex digits")
    for key in ("task", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise bad(f"{key} must be a string or null")
    created = data["created"]
    if isinstance(created, datetime):  # YAML reads an unquoted timestamp as a datetime
        created = created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        raise bad(f"created must be an ISO-8601 time, got {created!r}") from None
    kind = data.get("kind", "expert")
    if kind not in KINDS or (kind == "expert") == ("probe" in data):
        raise bad(f"kind must be one of {', '.join(KINDS)}, and a probe section given exactly for a probe")
    probe = parse_probe(data["probe"], bad) if kind == "probe" else None
    targets = parse_targets(data["targets"], bad, kind)
    files = parse_files(data.get("files") or {}, bad)
    return Manifest(
        name=data["name"],
        version=data["version"],
        format_version=fmt,
        base_model=data["base_model"],
        base_fingerprint=data["base_fingerprint"],
        targets=targets,
        svf_rule=data["svf_rule"],
        task=data.get("task"),
        description=data.get("description"),
        provenance=parse_provenance(data["provenance"], bad),
        metrics=parse_metrics(data.get("metrics") or {}, bad),
        created=str(created),
        t2_version=data["t2_version"],
        sha256=data["sha256"],
        files=files,
        sizes=parse_sizes(data.get("sizes"), targets, files, bad, probe),
        kind=kind,
        probe=probe,
    )


def new_manifest(
    *,
    name: str,
    base_model: str,
    base_fingerprint: str,
    targets: Iterable[TargetMatrix] | Mapping[str, TargetInfo],
    provenance: dict[str, Any],
    svf_rule: str = "none",
    task: str | None = None,
    description: str | None = None,
    metrics: Mapping[str, float] | None = None,
    probe: ProbeInfo | None = None,
) -> Manifest:
    """A manifest with the creation time and t2 version filled in and every field checked: an expert's,
    or with `probe` (and no targets) a probe's.

    Version and checksums stay empty: `save_expert_files` and the registry fill them.
    """
    from t2cli import __version__

    if SHA256_PATTERN.fullmatch(base_fingerprint) is None:
        raise BadInputError(f"base fingerprint {base_fingerprint!r} is not a sha256 hex digest")
    infos = dict(targets) if isinstance(targets, Mapping) else target_infos(targets)
    if not infos and probe is None:
        raise BadInputError(f"expert {name!r} adapts no matrices; select at least one target")
    if infos and probe is not None:
        raise BadInputError(f"probe {name!r} adapts no matrices; give it no targets")
    return Manifest(
        name=check_name(name),
        base_model=base_model,
        base_fingerprint=base_fingerprint,
        targets=infos,
        svf_rule=check_rule(svf_rule),
        provenance=check_provenance(dict(provenance)),
        task=task,
        description=description,
        metrics={key: float(value) for key, value in (metrics or {}).items()},
        created=utc_now(),
        t2_version=__version__,
        kind="expert" if probe is None else "probe",
        probe=probe,
    )


def check_fingerprint(manifest: Manifest, fingerprint: str) -> None:
    if manifest.base_fingerprint != fingerprint:
        raise IntegrityError(
            f"expert {manifest.ref} was made for model {manifest.base_model} (fingerprint "
            f"{manifest.base_fingerprint[:12]}), not this model ({fingerprint[:12]}); "
            "use an expert of this model or `t2 transfer` it"
        )


def check_compatible(first: Manifest, second: Manifest) -> None:
    """Same base weights and the same targets with the same ranks (what composing z needs)."""
    probe = next((m for m in (first, second) if m.kind != "expert"), None)
    if probe is not None:
        raise BadInputError(f"{probe.ref} is a {probe.kind}, not an expert; combine experts only")
    check_fingerprint(second, first.base_fingerprint)
    if first.targets != second.targets:
        only_first = sorted(set(first.targets) - set(second.targets))
        only_second = sorted(set(second.targets) - set(first.targets))
        detail = (
            f"{only_first[0]} only in {first.ref}" if only_first
            else f"{only_second[0]} only in {second.ref}" if only_second
            else "the same matrices have different ranks"
        )  # fmt: skip
        raise BadInputError(
            f"experts {first.ref} and {second.ref} adapt different matrices ({detail}); "
            "combine experts trained with the same --targets"
        )
