"""A checkpoint's safetensors files, read tensor by tensor."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Checkpoint:
    """Where a checkpoint's safetensors files store each tensor: name -> (file, key in the file).

    Tensors are read one at a time through safetensors' memory-mapped `safe_open`, so SVD and
    fingerprinting stream a model matrix by matrix instead of holding a second copy of it.
    """

    entries: dict[str, tuple[Path, str]]

    @classmethod
    def open(cls, folder: Path) -> Checkpoint | None:
        """The folder's safetensors tensors (via the shard index when there is one); None if it has none."""
        from safetensors import safe_open

        index = folder / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            return cls({key: (folder / file, key) for key, file in weight_map.items()})
        entries: dict[str, tuple[Path, str]] = {}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                keys = handle.keys()
            entries.update({key: (file, key) for key in keys})
        return cls(entries) if entries else None

    def aligned(self, names: Iterable[str]) -> Checkpoint | None:
        """This checkpoint keyed by the model's parameter names (prefixes may differ); None if one is missing."""
        entries: dict[str, tuple[Path, str]] = {}
        for name in names:
            if name in self.entries:
                entries[name] = self.entries[name]
                continue
            found = [key for key in self.entries if key.endswith(f".{name}") or name.endswith(f".{key}")]
            if len(found) != 1:
                return None
            entries[name] = self.entries[found[0]]
        return Checkpoint(entries)

    def shape(self, name: str) -> tuple[int, ...]:
        from safetensors import safe_open

        file, key = self.entries[name]
        with safe_open(str(file), framework="pt") as handle:
            return tuple(handle.get_slice(key).get_shape())

    def read(self, name: str) -> torch.Tensor:
        """The tensor as stored (its own dtype), on the CPU."""
        from safetensors import safe_open

        file, key = self.entries[name]
        with safe_open(str(file), framework="pt") as handle:
            return handle.get_tensor(key)


def checkpoint_folder(source: str) -> Path | None:
    """The local folder of a source: itself, or the HF cache's snapshot of an id already downloaded."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # not cached, or not a repo id: the model then has no files to read
        return None
