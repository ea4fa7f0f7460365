"""An expert's folder on disk: save, read, verify (checksums) and load z with its manifest."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from t2cli.errors import BadInputError, IntegrityError, NotFoundError
from t2cli.experts.manifest import FORMAT_VERSION, MAX_MANIFEST_BYTES, Manifest, check_compatible, check_fingerprint
from t2cli.experts.manifest_fields import (
    MANIFEST_FILE,
    RESERVED_FILES,
    Z_FILE,
    ProbeInfo,
    Refusal,
    is_extra_file_name,
    probe_tensor_shapes,
)
from t2cli.fsutil import atomic_write, copy_verified, decode_utf8, file_sha256, read_bounded
from t2cli.targets import ALL_ROLES


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


def check_z(manifest: Manifest, z: Mapping[str, torch.Tensor], source: str) -> None:
    """z must hold exactly the manifest's targets, each 1-D of length rank, fp32 and finite."""

    def bad(reason: str) -> IntegrityError:
        return IntegrityError(f"{source}: {reason}; retrain, recompose or re-pull the expert")

    if manifest.probe is not None:
        check_probe_tensors(manifest.probe, z, bad)
        return
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


def check_probe_tensors(probe: ProbeInfo, tensors: Mapping[str, torch.Tensor], bad: Refusal) -> None:
    """A probe's head: exactly its tensors, each of its shape, fp32 and finite, and a positive temperature."""
    shapes = probe_tensor_shapes(probe)
    if set(tensors) != set(shapes):
        raise bad(f"a probe's head holds exactly {', '.join(sorted(shapes))}, got {', '.join(sorted(tensors))}")
    for name, shape in shapes.items():
        tensor = tensors[name]
        if tensor.dtype != torch.float32 or tuple(tensor.shape) != shape:
            raise bad(f"probe tensor {name} is {tensor.dtype} {tuple(tensor.shape)}, expected float32 {shape}")
        if not bool(torch.isfinite(tensor).all()):
            raise bad(f"probe tensor {name} contains NaN or inf")
    if float(tensors["temperature"]) <= 0 or bool((tensors["scale"] <= 0).any()):
        raise bad("a probe's temperature and scales must be positive")


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
        if not is_extra_file_name(name):
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
        sizes={name: (folder / name).stat().st_size for name in (Z_FILE, *sorted(extras))},
    )
    write_manifest(folder, manifest)
    return manifest


def read_manifest_text(folder: Path) -> tuple[Manifest, bytes]:
    """The manifest of an expert folder, validated (its own checksum included), and its bytes as read."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise NotFoundError(f"expert folder {folder} does not exist")
    if not os.path.lexists(path):
        raise IntegrityError(f"{folder} has no {MANIFEST_FILE} (incomplete write?); remove it or re-pull the expert")
    data = read_bounded(path, MAX_MANIFEST_BYTES, what="a manifest", follow=False, error=IntegrityError)
    return Manifest.from_yaml(decode_utf8(data, str(path), error=IntegrityError), str(path)), data


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an expert folder, validated, without checking the other files."""
    return read_manifest_text(folder)[0]


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Checksums and sizes of z.safetensors and every extra file; nothing else in the folder, no links."""
    folder = Path(folder)
    for entry in sorted(folder.iterdir()):
        mode = entry.lstat().st_mode
        if entry.name != MANIFEST_FILE and entry.name not in manifest.sizes:
            raise IntegrityError(
                f"{folder}: {entry.name} is not listed in the manifest; remove it or republish the expert"
            )
        if not stat.S_ISREG(mode):
            raise IntegrityError(
                f"{folder}: {entry.name} is {'a link' if stat.S_ISLNK(mode) else 'not a regular file'}; "
                "re-pull or republish the expert"
            )
    for name in manifest.sizes:
        if not os.path.lexists(folder / name):
            raise IntegrityError(f"{folder}: {name} is missing; re-pull or republish the expert")
        copy_verified(folder / name, None, size=manifest.sizes[name], sha256=expected_sha256(manifest, name))


def expected_sha256(manifest: Manifest, name: str) -> str:
    return manifest.sha256 if name == Z_FILE else manifest.files[name]


def _read_z(folder: Path, manifest: Manifest) -> bytes:
    """z.safetensors' bytes, read no further than its recorded size and matched against its checksum."""
    size = manifest.sizes[Z_FILE]
    data = read_bounded(
        folder / Z_FILE, size, what=f"the {size:,} bytes its manifest records", follow=False, error=IntegrityError
    )
    if len(data) != size or hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise IntegrityError(
            f"{folder}: checksum mismatch on {Z_FILE} (corrupted or edited); re-pull or republish the expert"
        )
    return data


def load_expert(folder: Path, *, fingerprint: str | None = None) -> Expert:
    """Load and fully verify an expert folder (manifest, checksums, keys, lengths, finiteness, base model)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    folder = Path(folder)
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    # z is parsed from the very bytes that were checksummed: nothing can swap the file in between.
    data = _read_z(folder, manifest)
    try:
        z = load(data)
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
