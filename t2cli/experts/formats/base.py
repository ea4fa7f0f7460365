"""What an export format declares (`ExportFormat`), and what every format shares: the staged output folder,
the model card, the export record and the result."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from t2cli.errors import T2Error
from t2cli.fsutil import default_permissions

if TYPE_CHECKING:
    from t2cli.experts.fidelity import FidelityReport
    from t2cli.experts.files import Expert
    from t2cli.models.loading import LoadedModel
    from t2cli.svf import Factors

EXPORT_RECORD = "t2_export.json"


@dataclass
class ExportResult:
    format: str
    output: Path
    expert: str
    report: FidelityReport | None = None  # None: exact (merged, or a LoRA expert copied as is)
    parameters: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": self.format, "output": str(self.output), "expert": self.expert}
        if self.report is not None:
            data |= {"parameters": self.parameters, "fidelity": self.report.to_dict()}
        return data


class ExportFormat(Protocol):
    """A format class, as `t2 export --format` sees it."""

    name: str
    # It writes a truncated form whose size --rank K / --energy E choose (the default: the rank an expert
    # was trained at); the others are exact and refuse a budget.
    budget: bool

    @classmethod
    def export(
        cls,
        loaded: LoadedModel,
        expert: Expert,
        factors: Mapping[str, Factors],
        expert_folder: Path,
        output: Path,
        *,
        rank: int | None,
        energy: float | None,
    ) -> ExportResult:
        """Write the expert to the new folder `output` (through `staged`); `factors` cover its targets."""
        ...

    @classmethod
    def load(cls, loaded: LoadedModel, folder: Path) -> LoadedModel:
        """The exported folder loaded the way other runtimes load it (`t2 export --eval` scores it)."""
        ...


@contextmanager
def staged(output: Path) -> Iterator[Path]:
    """A fresh folder beside `output` that becomes `output` when the block ends without error, with the
    permissions a plain mkdir and open would give (mkdtemp's folder is 0700, safetensors' files 0600).

    When another export took `output` meanwhile (or made it a link or a file), this one is dropped with a
    one-line T2Error: the first finished export stays whole."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        yield staging
        default_permissions(staging)
        try:
            if not output.is_symlink() and output.is_dir() and not any(output.iterdir()):
                output.rmdir()
            os.rename(staging, output)
        except OSError as problem:
            if problem.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            raise T2Error(
                f"{output} was written by another process while this export ran; pass a new -o folder"
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def model_card(expert: Expert, base_model: str, body: str) -> str:
    m = expert.manifest
    return (
        f"---\nbase_model: {base_model}\nlibrary_name: peft\ntags: [t2, transformer-squared, lora]\n---\n\n"
        f"# {m.ref}: {m.description or m.name}\n\n"
        f"Exported by `t2 export` from the t2 expert `{m.ref}` (base fingerprint `{m.base_fingerprint[:12]}`, "
        f"z sha256 `{m.sha256[:12]}`).\n\n{body}\n\n"
        "```python\nfrom peft import PeftModel\nmodel = PeftModel.from_pretrained(base, 'THIS_FOLDER')\n```\n"
    )


def write_record(folder: Path, expert: Expert, fmt: str, extra: Mapping[str, Any]) -> None:
    """t2_export.json: which expert (and z) the folder holds, in which format, with which budget."""
    data = {"expert": expert.manifest.ref, "z_sha256": expert.manifest.sha256, "format": fmt, **extra}
    (folder / EXPORT_RECORD).write_text(json.dumps(data, indent=2) + "\n")
