"""A remote's address and the record of one transfer, shared by the folder and Hub remotes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from t2cli.errors import BadInputError

# The Hub's own rule (huggingface_hub.utils.validate_repo_id), in ASCII: each part 1-96 letters, digits, `_`, `.`,
# `-`, starting with a letter or digit and ending with a letter, digit or `_`; no `--` or `..`; no `.git` ending.
_PART = r"[A-Za-z0-9](?:[\w.-]{0,94}\w)?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}", re.ASCII)


def valid_repo_id(repo_id: str) -> bool:
    doubled = "--" in repo_id or ".." in repo_id
    return bool(_REPO_ID.fullmatch(repo_id)) and not doubled and not repo_id.endswith(".git")


@dataclass(frozen=True)
class Remote:
    """A parsed remote URL: a registry folder, or a Hub repo at an optional revision."""

    url: str
    kind: Literal["file", "hf"]
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None


def parse_remote(url: str) -> Remote:
    """`file:///abs/path` or `hf://user/repo[@revision]`."""
    if url.startswith("hf://"):
        repo_id, at, revision = url[len("hf://") :].partition("@")
        if not valid_repo_id(repo_id) or (at and not revision):
            raise BadInputError(
                f"bad Hub remote {url!r}; write hf://user/repo or hf://user/repo@revision (ASCII letters, digits, "
                "'_', '.', '-', at most 96 per part, no '--' or '..')"
            )
        return Remote(url=url, kind="hf", repo_id=repo_id, revision=revision or None)
    if url.startswith("file:"):
        parsed = urlparse(url)
        path = Path(unquote(parsed.path))
        if parsed.netloc not in ("", "localhost") or not path.is_absolute():
            raise BadInputError(f"bad file remote {url!r}; write file:///absolute/path (three slashes)")
        return Remote(url=url, kind="file", path=path)
    raise BadInputError(f"unknown remote {url!r}; use file:///absolute/path or hf://user/repo[@revision]")


@dataclass(frozen=True)
class SyncRecord:
    """What a push or pull did: `pushed`/`pulled`, or `unchanged` when the other side had it already."""

    action: str
    name: str
    version: int
    model_slug: str
    remote: str
    local: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"
