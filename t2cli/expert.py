"""SVF experts on disk: z vectors in `z.safetensors` plus a `manifest.yaml` that says what they adapt.

An expert folder holds

    z.safetensors   one 1-D fp32 tensor per targeted matrix, keyed by the model's parameter name
    manifest.yaml   name, version, base model + fingerprint, targets and ranks, SVF rule,
                    provenance, metrics, sha256 of z.safetensors and of every extra file
    <extra files>   optional (e.g. a PEFT LoRA adapter saved beside for comparison)

`load_expert` refuses any folder whose files do not match the manifest exactly, so a z vector that
reaches the SVF math always has the right keys, lengths and finite values for its base model.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from t2cli.errors import BadInputError, IntegrityError, NotFoundError
from t2cli.models import ALL_ROLES, TargetMatrix
from t2cli.svf import check_rule

FORMAT_VERSION = 1
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
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
MAX_NAME_LENGTH = 100
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def targets_from(targets: Iterable[TargetMatrix]) -> dict[str, TargetInfo]:
    """Manifest targets for these matrices, keyed by parameter name."""
    return {t.name: TargetInfo(role=t.role, layer=t.layer, rank=t.rank) for t in targets}


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
    format_version: int = FORMAT_VERSION

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def main_metric(self) -> tuple[str, float] | None:
        """The first metric: trainers record the one they select checkpoints by first."""
        return next(iter(self.metrics.items()), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in a human reading order; targets as a compact list."""
        return {
            "format_version": self.format_version,
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
            "metrics": dict(self.metrics),
            "provenance": self.provenance,
            "targets": [{"name": name, **asdict(info)} for name, info in self.targets.items()],
        }

    def to_yaml(self) -> str:
        try:
            return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=120)
        except yaml.YAMLError as error:
            raise BadInputError(
                f"manifest of {self.name!r} holds a value YAML cannot store ({error}); use plain numbers, strings, "
                "lists and dicts in provenance and metrics"
            ) from None

    @classmethod
    def from_yaml(cls, text: str, source: str = "manifest") -> Manifest:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            raise IntegrityError(
                f"{source} is not valid YAML{line}; restore it from the registry or a remote"
            ) from None
        return _parse_manifest(data, source)


_REQUIRED_FIELDS = (
    "format_version", "name", "version", "base_model", "base_fingerprint", "svf_rule",
    "created", "t2_version", "sha256", "provenance", "targets",
)  # fmt: skip
_OPTIONAL_FIELDS = ("task", "description", "metrics", "files")
_Refusal = Callable[[str], IntegrityError]


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
        if not isinstance(data[key], str) or _SHA256.fullmatch(data[key]) is None:
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
    return Manifest(
        name=data["name"],
        version=data["version"],
        format_version=fmt,
        base_model=data["base_model"],
        base_fingerprint=data["base_fingerprint"],
        targets=_parse_targets(data["targets"], bad),
        svf_rule=data["svf_rule"],
        task=data.get("task"),
        description=data.get("description"),
        provenance=_parse_provenance(data["provenance"], bad),
        metrics=_parse_metrics(data.get("metrics") or {}, bad),
        created=str(created),
        t2_version=data["t2_version"],
        sha256=data["sha256"],
        files=_parse_files(data.get("files") or {}, bad),
    )


def _parse_targets(entries: Any, bad: _Refusal) -> dict[str, TargetInfo]:
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


def _parse_provenance(provenance: Any, bad: _Refusal) -> dict[str, Any]:
    try:
        return check_provenance(provenance)
    except BadInputError as error:
        raise bad(str(error)) from None


def _parse_metrics(metrics: Any, bad: _Refusal) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise bad("metrics must map names to numbers")
    parsed = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"metric {key!r} must be a number")
        parsed[key] = float(value)
    return parsed


def _parse_files(files: Any, bad: _Refusal) -> dict[str, str]:
    if not isinstance(files, dict):
        raise bad("files must map file names to sha256 digests")
    for name, digest in files.items():
        if not _is_extra_file_name(name):
            raise bad(f"files lists {name!r}, which is not a plain file name")
        if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
            raise bad(f"files[{name!r}] must be 64 lowercase hex digits")
    return dict(files)


def _is_extra_file_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name not in RESERVED_FILES
        and not name.startswith(".")
        and Path(name).name == name
        and name not in ("", "..")
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
) -> Manifest:
    """A manifest with the creation time and t2 version filled in and every field checked.

    Version and checksums stay empty: `save_expert_files` and the registry fill them.
    """
    from t2cli import __version__

    if _SHA256.fullmatch(base_fingerprint) is None:
        raise BadInputError(f"base fingerprint {base_fingerprint!r} is not a sha256 hex digest")
    infos = dict(targets) if isinstance(targets, Mapping) else targets_from(targets)
    if not infos:
        raise BadInputError(f"expert {name!r} adapts no matrices; select at least one target")
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
    )


@dataclass
class Expert:
    """An expert in memory: its manifest and one z vector per target (1-D fp32)."""

    manifest: Manifest
    z: dict[str, torch.Tensor]

    @property
    def name(self) -> str:
        return self.manifest.name

    def check_compatible(self, other: Expert) -> None:
        """Refuse to combine experts of different base weights or different target matrices."""
        check_compatible(self.manifest, other.manifest)


def check_fingerprint(manifest: Manifest, fingerprint: str) -> None:
    if manifest.base_fingerprint != fingerprint:
        raise IntegrityError(
            f"expert {manifest.ref} was made for model {manifest.base_model} (fingerprint "
            f"{manifest.base_fingerprint[:12]}), not this model ({fingerprint[:12]}); "
            "use an expert of this model or `t2 transfer` it"
        )


def check_compatible(first: Manifest, second: Manifest) -> None:
    """Same base weights and the same targets with the same ranks (what composing z needs)."""
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


def check_z(manifest: Manifest, z: Mapping[str, torch.Tensor], source: str) -> None:
    """z must hold exactly the manifest's targets, each 1-D of length rank, fp32 and finite."""

    def bad(reason: str) -> IntegrityError:
        return IntegrityError(f"{source}: {reason}; retrain, recompose or re-pull the expert")

    for name in manifest.targets:
        if name not in z:
            raise bad(f"no z for target {name}")
    for name, vector in z.items():
        info = manifest.targets.get(name)
        if info is None:
            raise bad(f"z has key {name}, which the manifest does not target")
        if vector.dtype != torch.float32:
            raise bad(f"z for {name} is {vector.dtype}, expected float32")
        if vector.dim() != 1 or vector.shape[0] != info.rank:
            raise bad(f"z for {name} has shape {tuple(vector.shape)}, expected ({info.rank},) for its rank")
        if not bool(torch.isfinite(vector).all()):
            raise bad(f"z for {name} contains NaN or inf")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so readers see the old content or the new one, never a part."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_manifest(folder: Path, manifest: Manifest) -> None:
    atomic_write(folder / MANIFEST_FILE, manifest.to_yaml().encode())


def save_expert_files(expert: Expert, folder: Path, *, extra_files: Mapping[str, Path] | None = None) -> Manifest:
    """Write z.safetensors, the extra files and (last) manifest.yaml with every checksum filled in.

    The manifest goes last, so a folder cut short by a crash has none and `load_expert` refuses it.
    Returns the manifest as written; `expert` is not modified.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if any((folder / name).exists() for name in RESERVED_FILES):
        raise BadInputError(f"{folder} already holds an expert; write to a new folder (versions are immutable)")
    z = {name: vector.detach().to("cpu", torch.float32).contiguous() for name, vector in expert.z.items()}
    check_z(expert.manifest, z, f"expert {expert.name!r}")
    extras = dict(extra_files or {})
    for name, path in extras.items():
        if not _is_extra_file_name(name):
            raise BadInputError(
                f"extra file name {name!r} must be a plain file name other than {', '.join(RESERVED_FILES)}"
            )
        if not Path(path).is_file():
            raise NotFoundError(f"extra file {path} for {name!r} does not exist")
    folder.mkdir(parents=True, exist_ok=True)
    save_file(z, str(folder / Z_FILE), metadata={"format": "pt", "t2_format": str(FORMAT_VERSION)})
    for name, path in extras.items():
        shutil.copyfile(path, folder / name)
    manifest = replace(
        expert.manifest,
        sha256=file_sha256(folder / Z_FILE),
        files={name: file_sha256(folder / name) for name in sorted(extras)},
    )
    write_manifest(folder, manifest)
    return manifest


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an expert folder, validated, without checking the other files."""
    path = Path(folder) / MANIFEST_FILE
    if not Path(folder).is_dir():
        raise NotFoundError(f"expert folder {folder} does not exist")
    if not path.is_file():
        raise IntegrityError(f"{folder} has no {MANIFEST_FILE} (incomplete write?); remove it or re-pull the expert")
    return Manifest.from_yaml(path.read_text(encoding="utf-8"), str(path))


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Checksums of z.safetensors and every extra file; no file the manifest does not list."""
    folder = Path(folder)
    expected = {Z_FILE: manifest.sha256, **manifest.files}
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise IntegrityError(f"{folder}: {name} is missing; re-pull or republish the expert")
        if file_sha256(path) != digest:
            raise IntegrityError(
                f"{folder}: checksum mismatch on {name} (corrupted or edited); re-pull or republish the expert"
            )
    listed = {MANIFEST_FILE, *expected}
    unlisted = sorted(p.name for p in folder.iterdir() if p.name not in listed and not p.name.startswith("."))
    if unlisted:
        raise IntegrityError(
            f"{folder}: {unlisted[0]} is not listed in the manifest; remove it or republish the expert"
        )


def load_expert(folder: Path, *, fingerprint: str | None = None) -> Expert:
    """Load and fully verify an expert folder (manifest, checksums, keys, lengths, finiteness, base model)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    try:
        z = load_file(str(folder / Z_FILE))
    except SafetensorError as error:
        raise IntegrityError(f"{folder}: {Z_FILE} is not a valid safetensors file ({error}); re-pull it") from None
    check_z(manifest, z, str(folder / Z_FILE))
    if fingerprint is not None:
        check_fingerprint(manifest, fingerprint)
    return Expert(manifest=manifest, z=z)


@dataclass(frozen=True)
class ZStat:
    """Summary of one z vector, for `t2 registry show`."""

    name: str
    layer: int
    role: str
    rank: int
    mean: float
    std: float
    min: float
    max: float


def z_stats(expert: Expert) -> list[ZStat]:
    """Mean, std, min and max of z per matrix, ordered by layer then role (attention first)."""
    order = {role: i for i, role in enumerate(ALL_ROLES)}
    stats = []
    for name, info in expert.manifest.targets.items():
        vector = expert.z[name].double()
        stats.append(
            ZStat(
                name=name,
                layer=info.layer,
                role=info.role,
                rank=info.rank,
                mean=float(vector.mean()),
                std=float(vector.std(correction=0)),
                min=float(vector.min()),
                max=float(vector.max()),
            )
        )
    stats.sort(key=lambda s: (s.layer, order[s.role], s.name))
    return stats
