"""Push and pull registry versions: to a folder (`file:///abs/path`) or a Hub model repo (`hf://user/repo`).

Both remotes use the registry layout `<model-slug>/<expert>/<version>/`. A version crosses over
whole or not at all: it is staged, verified against its checksums, then renamed (file, and every
pull) or committed in one Hub commit (hf push). A version that exists on the other side with the
same checksums is a no-op; with different checksums it is refused, since versions are immutable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from t2cli.errors import NotFoundError
from t2cli.experts.registry import ExpertRef, Registry, pick
from t2cli.experts.remotes.base import Remote, SyncRecord, parse_remote

if TYPE_CHECKING:
    from huggingface_hub import HfApi


def _transfer(ref: ExpertRef, remote: Remote, action: str, moved: bool) -> SyncRecord:
    return SyncRecord(
        action=action if moved else "unchanged",
        name=ref.name,
        version=ref.version,
        model_slug=ref.model_slug,
        remote=remote.url,
        local=str(ref.path),
    )


def push(
    registry: Registry, spec: str, remote_url: str, *, model_slug: str | None = None, api: HfApi | None = None
) -> SyncRecord:
    """Copy one local version (`name` = latest, or `name@V`) to a remote.

    `api` is the `huggingface_hub.HfApi` to use for hf:// remotes (default: one with the
    environment's endpoint and token).
    """
    remote = parse_remote(remote_url)
    ref = registry.resolve(spec, model_slug)
    if remote.kind == "file":
        _, moved = Registry(remote.path).import_version(ref.path, ref.model_slug, ref.name, ref.version)
    else:
        from t2cli.experts.remotes.hub import push_version

        moved = push_version(ref, remote, api)
    return _transfer(ref, remote, "pushed", moved)


def pull(
    registry: Registry, remote_url: str, spec: str, *, model_slug: str | None = None, api: HfApi | None = None
) -> SyncRecord:
    """Install one remote version (`name` = the remote's latest, or `name@V`) into the registry, verified."""
    remote = parse_remote(remote_url)
    if remote.kind == "file":
        if not remote.path.is_dir():
            raise NotFoundError(f"remote {remote.url} does not exist; check the path")
        source = Registry(remote.path)
        found = source.ref(*pick(source.catalog(), spec, model_slug, remote.url))
        ref, moved = registry.import_version(found.path, found.model_slug, found.name, found.version)
    else:
        from t2cli.experts.remotes.hub import pull_version

        ref, moved = pull_version(registry, remote, spec, model_slug, api)
    return _transfer(ref, remote, "pulled", moved)
