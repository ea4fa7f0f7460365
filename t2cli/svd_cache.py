"""The SVD cache file: where it lies, the safetensors layout it is, read memory-mapped and written
tensor by tensor (atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from t2cli.config import t2_home
from t2cli.errors import BadInputError, IntegrityError
from t2cli.svf import Factors
from t2cli.targets import TargetMatrix

CACHE_FORMAT = 1
CACHE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}


def cache_path(fingerprint: str, root: Path | None = None) -> Path:
    return (root or t2_home() / "svd") / f"{fingerprint[:24]}.safetensors"


def _read_header(path: Path) -> tuple[dict, int]:
    with path.open("rb") as handle:
        size_bytes = handle.read(8)
        if len(size_bytes) != 8:
            raise IntegrityError(f"SVD cache {path} is truncated; delete it or run `t2 decompose --force`")
        size = int.from_bytes(size_bytes, "little")
        try:
            header = json.loads(handle.read(size))
        except (ValueError, UnicodeDecodeError):
            raise IntegrityError(f"SVD cache {path} has a corrupt header; run `t2 decompose --force`") from None
    return header, 8 + size


def map_cache(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Memory-map a safetensors file: tensors are views on the file, read only when touched."""
    header, data_start = _read_header(path)
    metadata = header.pop("__metadata__", {}) or {}
    total = path.stat().st_size
    buffer = torch.from_file(str(path), shared=False, size=total, dtype=torch.uint8)
    tensors = {}
    for name, entry in header.items():
        start, end = (data_start + offset for offset in entry["data_offsets"])
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None or end > total:
            raise IntegrityError(f"SVD cache {path} has a bad entry {name!r}; run `t2 decompose --force`")
        tensors[name] = buffer[start:end].view(dtype).view(entry["shape"])
    return metadata, tensors


def write_cache(
    path: Path,
    metadata: dict[str, str],
    plan: list[tuple[TargetMatrix, torch.dtype]],
    factors_of: Callable[[TargetMatrix], Factors],
) -> None:
    """Write a safetensors cache tensor by tensor, atomically.

    The header is laid out from the shapes alone, so each matrix's factors are written as soon as
    they exist and dropped: the file never needs all factors in memory at once.
    """
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for target, dtype in plan:
        (m, n), r = target.shape, target.rank
        for part, shape in (("U", [m, r]), ("S", [r]), ("Vh", [r, n])):
            size = dtype.itemsize * shape[0] * (shape[1] if len(shape) == 2 else 1)
            header[f"{target.name}.{part}"] = {
                "dtype": _CODES[dtype],
                "shape": shape,
                "data_offsets": [offset, offset + size],
            }
            offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # tensor data starts 8-byte aligned
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(len(raw).to_bytes(8, "little") + raw)
            for target, dtype in plan:
                factors = factors_of(target)
                for tensor in (factors.U, factors.S, factors.Vh):
                    out.write(tensor.detach().to("cpu", dtype).contiguous().view(torch.uint8).numpy().tobytes())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def cache_dtype_of(name: str) -> torch.dtype:
    if name not in CACHE_DTYPES:
        raise BadInputError(f"unknown SVD cache dtype {name!r}; use one of {', '.join(CACHE_DTYPES)}")
    return CACHE_DTYPES[name]
