"""hf:// remotes: a Hugging Face Hub model repo holding `<model-slug>/<expert>/<version>/` folders.

All traffic goes through `huggingface_hub.HfApi` (token and endpoint as huggingface_hub finds them:
HF_TOKEN or `hf auth login`, HF_ENDPOINT). A push is one commit holding the version's files and the
regenerated card, made on top of the commit it inspected (`parent_commit`), so two racing pushes
cannot silently drop each other's card rows. A pull reads one commit throughout.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from t2cli.errors import BadInputError, IntegrityError, NotFoundError, T2Error
from t2cli.experts.files import load_expert
from t2cli.experts.manifest import MAX_MANIFEST_BYTES, Manifest
from t2cli.experts.manifest_fields import MANIFEST_FILE, Z_FILE, check_name
from t2cli.experts.registry import Catalog, ExpertRef, Registry, pick
from t2cli.experts.remotes.card import CARD_FILE, CardEntry, render_card
from t2cli.fsutil import read_text_bounded

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from t2cli.experts.remotes.base import Remote

_MANIFEST_PATH = re.compile(rf"([^/]+)/([^/]+)/([1-9][0-9]*)/{re.escape(MANIFEST_FILE)}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def default_api() -> HfApi:
    from huggingface_hub import HfApi

    from t2cli import __version__

    return HfApi(library_name="t2", library_version=__version__)


def _transport_errors() -> tuple[type[BaseException], ...]:
    # huggingface_hub 2.x talks through httpx2, 1.x through httpx: catch the network errors of either.
    try:
        from httpx2 import TransportError
    except ImportError:
        from httpx import TransportError
    return (TransportError, ConnectionError, TimeoutError)


@contextmanager
def hub_errors(remote: Remote, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub and network failures into one-line t2 errors."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except HFValidationError as error:  # a name the Hub refuses (parse_remote checks the same rules first)
        raise BadInputError(f"bad Hub remote {remote.url!r}: {str(error).splitlines()[0]}") from None
    except RepositoryNotFoundError:
        raise NotFoundError(
            f"remote {remote.url} not found (missing, or private: set HF_TOKEN or run `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise NotFoundError(
            f"revision {remote.revision!r} not found in {remote.url}; check the branch or commit"
        ) from None
    except RemoteEntryNotFoundError as error:
        raise NotFoundError(f"{remote.url} lacks a file it lists ({error.response.url}); retry the transfer") from None
    except HfHubHTTPError as error:
        status = error.response.status_code
        if status in (401, 403):
            raise NotFoundError(
                f"no access to {remote.url} (HTTP {status}); set HF_TOKEN to a token with write access or run "
                "`hf auth login`"
            ) from None
        if status in (409, 412):
            raise T2Error(f"{remote.url} changed while t2 was pushing (HTTP {status}); run the push again") from None
        raise NotFoundError(f"{remote.url} answered HTTP {status}; retry later or check HF_ENDPOINT") from None
    except LocalEntryNotFoundError:
        raise NotFoundError(
            f"cannot download from {remote.url}; check the network or HF_ENDPOINT ({endpoint})"
        ) from None
    except _transport_errors() as error:
        raise NotFoundError(
            f"cannot reach {endpoint} for {remote.url} ({error.__class__.__name__}); check the network or HF_ENDPOINT"
        ) from None


def catalog_from_files(paths: Iterable[str]) -> Catalog:
    """The versions a repo holds, from its file list (a version counts once its manifest is there)."""
    catalog: Catalog = {}
    for path in paths:
        match = _MANIFEST_PATH.fullmatch(path)
        if match is None:
            continue
        if len(match.group(3)) > 18:  # no registry issues such versions; int() would refuse past 4,300 digits
            continue
        slug, name, version = match.group(1), match.group(2), int(match.group(3))
        try:
            check_name(name)
        except BadInputError:
            continue  # not an expert folder t2 wrote
        catalog.setdefault(slug, {}).setdefault(name, []).append(version)
    for experts in catalog.values():
        for versions in experts.values():
            versions.sort()
    return catalog


def _remote_manifest(api: HfApi, remote: Remote, commit: str, slug: str, name: str, version: int) -> Manifest:
    path = f"{slug}/{name}/{version}/{MANIFEST_FILE}"
    with tempfile.TemporaryDirectory(prefix="t2-hub-") as scratch:
        local = api.hf_hub_download(remote.repo_id, path, revision=commit, local_dir=scratch)
        text = read_text_bounded(Path(local), MAX_MANIFEST_BYTES, what="a manifest", error=IntegrityError)
        return Manifest.from_yaml(text, f"{remote.url}/{path}")


def push_version(ref: ExpertRef, remote: Remote, api: HfApi | None = None) -> bool:
    """Commit one verified local version to the repo; False when the repo already holds it unchanged."""
    from huggingface_hub import CommitOperationAdd

    api = api or default_api()
    if remote.revision is not None and _COMMIT.fullmatch(remote.revision):
        raise BadInputError(
            f"cannot push to commit {remote.revision}; push to a branch: hf://{remote.repo_id}[@branch]"
        )
    manifest = load_expert(ref.path).manifest  # nothing unverified leaves the machine
    with hub_errors(remote, api.endpoint):
        api.create_repo(remote.repo_id, exist_ok=True)
        head = api.repo_info(remote.repo_id, revision=remote.revision).sha
        catalog = catalog_from_files(api.list_repo_files(remote.repo_id, revision=head))
        versions = catalog.setdefault(ref.model_slug, {}).setdefault(ref.name, [])
        if ref.version in versions:
            theirs = _remote_manifest(api, remote, head, ref.model_slug, ref.name, ref.version)
            if (theirs.sha256, theirs.files) == (manifest.sha256, manifest.files):
                return False
            raise IntegrityError(
                f"{ref.spec} ({ref.model_slug}) already exists in {remote.url} with other content; versions are "
                "immutable: publish yours as a new version"
            )
        versions.append(ref.version)
        versions.sort()
        entries = []
        for slug, experts in catalog.items():
            for name, held in experts.items():
                latest = held[-1]
                mine = (slug, name, latest) == (ref.model_slug, ref.name, ref.version)
                latest_manifest = manifest if mine else _remote_manifest(api, remote, head, slug, name, latest)
                entries.append(CardEntry(slug, held, latest_manifest))
        folder = f"{ref.model_slug}/{ref.name}/{ref.version}"
        operations = [
            CommitOperationAdd(f"{folder}/{file}", str(ref.path / file))
            for file in (Z_FILE, MANIFEST_FILE, *manifest.files)
        ]
        operations.append(CommitOperationAdd(CARD_FILE, render_card(remote.repo_id, entries).encode()))
        api.create_commit(
            remote.repo_id,
            operations,
            commit_message=f"t2: add {ref.spec} for {ref.model_slug}",
            revision=remote.revision,
            parent_commit=head,
        )
    return True


def pull_version(
    registry: Registry, remote: Remote, spec: str, model_slug: str | None, api: HfApi | None = None
) -> tuple[ExpertRef, bool]:
    """Download one version to a scratch folder and install it only if it verifies."""
    api = api or default_api()
    with hub_errors(remote, api.endpoint):
        commit = api.repo_info(remote.repo_id, revision=remote.revision).sha
        catalog = catalog_from_files(api.list_repo_files(remote.repo_id, revision=commit))
        slug, name, version = pick(catalog, spec, model_slug, remote.url)
        folder = f"{slug}/{name}/{version}"
        with tempfile.TemporaryDirectory(prefix="t2-hub-") as scratch:
            api.snapshot_download(remote.repo_id, revision=commit, allow_patterns=[f"{folder}/*"], local_dir=scratch)
            return registry.import_version(Path(scratch) / folder, slug, name, version)
