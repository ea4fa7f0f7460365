"""Push and pull registry versions: to a folder (`file:///abs/path`) or a Hub model repo (`hf://user/repo`).

Both remotes use the registry layout `<model-slug>/<expert>/<version>/`. A version crosses over
whole or not at all: it is staged, verified against its checksums, then renamed (file, and every
pull) or committed in one Hub commit (hf push). A version that exists on the other side with the
same checksums is a no-op; with different checksums it is refused, since versions are immutable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlparse

from t2cli.errors import BadInputError, NotFoundError
from t2cli.store import ExpertRef, Registry, pick

if TYPE_CHECKING:
    from huggingface_hub import HfApi

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


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
        if _REPO_ID.fullmatch(repo_id) is None or (at and not revision):
            raise BadInputError(f"bad Hub remote {url!r}; write hf://user/repo or hf://user/repo@revision")
        return Remote(url=url, kind="hf", repo_id=repo_id, revision=revision or None)
    if url.startswith("file:"):
        parsed = urlparse(url)
        path = Path(unquote(parsed.path))
        if parsed.netloc not in ("", "localhost") or not path.is_absolute():
            raise BadInputError(f"bad file remote {url!r}; write file:///absolute/path (three slashes)")
        return Remote(url=url, kind="file", path=path)
    raise BadInputError(f"unknown remote {url!r}; use file:///absolute/path or hf://user/repo[@revision]")


@dataclass(frozen=True)
class Transfer:
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


def _transfer(ref: ExpertRef, remote: Remote, action: str, moved: bool) -> Transfer:
    return Transfer(
        action=action if moved else "unchanged",
        name=ref.name,
        version=ref.version,
        model_slug=ref.model_slug,
        remote=remote.url,
        local=str(ref.path),
    )


def push(
    registry: Registry, spec: str, remote_url: str, *, model_slug: str | None = None, api: HfApi | None = None
) -> Transfer:
    """Copy one local version (`name` = latest, or `name@V`) to a remote.

    `api` is the `huggingface_hub.HfApi` to use for hf:// remotes (default: one with the
    environment's endpoint and token).
    """
    remote = parse_remote(remote_url)
    ref = registry.resolve(spec, model_slug)
    if remote.kind == "file":
        _, moved = Registry(remote.path).import_version(ref.path, ref.model_slug, ref.name, ref.version)
    else:
        from t2cli.remotes.hub import push_version

        moved = push_version(ref, remote, api)
    return _transfer(ref, remote, "pushed", moved)


def pull(
    registry: Registry, remote_url: str, spec: str, *, model_slug: str | None = None, api: HfApi | None = None
) -> Transfer:
    """Install one remote version (`name` = the remote's latest, or `name@V`) into the registry, verified."""
    remote = parse_remote(remote_url)
    if remote.kind == "file":
        if not remote.path.is_dir():
            raise NotFoundError(f"remote {remote.url} does not exist; check the path")
        source = Registry(remote.path)
        found = source.ref(*pick(source.catalog(), spec, model_slug, remote.url))
        ref, moved = registry.import_version(found.path, found.model_slug, found.name, found.version)
    else:
        from t2cli.remotes.hub import pull_version

        ref, moved = pull_version(registry, remote, spec, model_slug, api)
    return _transfer(ref, remote, "pulled", moved)
