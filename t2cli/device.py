"""Where models run and in what precision: `--device` / `--dtype` (or $T2_DEVICE / $T2_DTYPE) resolved once.

`auto` means a CUDA GPU in bf16 when one is present, else the CPU in fp32 (bf16 matmuls on CPU are
slower than fp32 ones and fp16 ones lack kernels). Checking the spelling needs no torch import, so
the CLI refuses a bad value at once; resolving against the hardware happens before a model loads.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError

DEVICE_ENV = "T2_DEVICE"
DTYPE_ENV = "T2_DTYPE"
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class Placement:
    """A resolved device (`cpu`, `cuda:0`, `mps`) and compute dtype name (`float32`, `bfloat16`, `float16`)."""

    device: str
    dtype: str

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def check_device(device: str | None) -> str:
    """The device spelling (argument, else $T2_DEVICE, else auto), refused when it is none of ours."""
    value = (device or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if _DEVICE_PATTERN.fullmatch(value) is None:
        source = "--device" if device else f"${DEVICE_ENV}"
        raise BadInputError(f"{source} {value!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    return value


def check_dtype(dtype: str | None) -> str:
    """The dtype spelling (argument, else $T2_DTYPE, else auto); `bf16`/`fp32`/`fp16` are accepted too."""
    value = (dtype or os.environ.get(DTYPE_ENV) or "auto").strip().lower()
    value = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16", "half": "float16"}.get(value, value)
    if value not in DTYPES:
        source = "--dtype" if dtype else f"${DTYPE_ENV}"
        raise BadInputError(f"{source} {value!r} is not a dtype; use one of {', '.join(DTYPES)}")
    return value


def resolve_placement(device: str | None = None, dtype: str | None = None) -> Placement:
    """The concrete device and dtype for these settings on this machine (refused when it lacks the device)."""
    import torch

    wanted, precision = check_device(device), check_dtype(dtype)
    if wanted == "auto":
        wanted = "cuda:0" if torch.cuda.is_available() else "cpu"
    elif wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInputError(f"device {wanted!r} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
        index = int(wanted.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise BadInputError(
                f"device {wanted!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s); use cuda:0 … or auto"
            )
        wanted = f"cuda:{index}"
    elif wanted == "mps" and not torch.backends.mps.is_available():
        raise BadInputError("device 'mps' asked for, but torch sees no Apple GPU; use --device cpu or auto")
    if precision == "auto":
        precision = "bfloat16" if wanted.startswith("cuda") else "float32"
    return Placement(device=wanted, dtype=precision)


def dtype_name(dtype: Any) -> str:
    """`float32` for torch.float32."""
    return str(dtype).removeprefix("torch.")


_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: str) -> None:
    """Start a new peak-memory window: CUDA's counters, or Linux's peak resident set (VmHWM)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
        return
    # "5" resets VmHWM to the current RSS (Linux >= 4.0); elsewhere the peak covers the whole run.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process on the device since the last reset: CUDA's max allocated, else the
    peak resident set (VmHWM on Linux; ru_maxrss, the whole run's, elsewhere)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB


_MEMINFO = Path("/proc/meminfo")


def free_memory_bytes(device: str) -> int | None:
    """Memory a new tensor could still take on the device: CUDA's free bytes, or the host's MemAvailable
    (Linux); None where neither can be read."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(device)[0])
    if device == "cpu" and _MEMINFO.exists():
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None
