"""The expert registry: `ROOT/<model-slug>/<expert>/<version>/`, one expert folder per version.

Versions are integers 1, 2, 3... and immutable: a version folder appears in one rename, fully
written and verified, and is never rewritten. Every write to an expert (publish, import, remove)
holds that expert's lock (`ROOT/<slug>/<expert>/.lock`, an OS lock the kernel drops when its holder
dies) and stages its files in a `.staging-*` folder beside the versions. A writer killed mid-way
leaves only that staging folder: listings skip dot-folders, and the next writer of the expert,
holding the lock, knows any staging folder it finds is stale and deletes it (t2cli.experts.versions).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from t2cli.config import t2_home
from t2cli.errors import BadInputError, IntegrityError, NotFoundError, T2Error
from t2cli.experts.files import (
    Expert,
    expected_sha256,
    load_expert,
    read_manifest,
    read_manifest_text,
    save_expert_files,
)
from t2cli.experts.manifest import Manifest
from t2cli.experts.manifest_fields import MANIFEST_FILE, VERSION_PATTERN, check_name, parse_expert_spec
from t2cli.experts.versions import (
    Problem,
    commit_version,
    expert_lock,
    folder_problems,
    issued_version,
    layout_problems,
    retire_version,
    sweep_staging,
)
from t2cli.fsutil import atomic_write, copy_verified
from t2cli.models.loading import slugify

REGISTRY_ENV = "T2_REGISTRY"

# slug -> expert name -> sorted versions
Catalog = dict[str, dict[str, list[int]]]


def user_root() -> Path:
    """The user-level registry, <t2 home>/registry: the fallback root, seeded from the bundled bank."""
    return t2_home() / "registry"


def resolve_root(explicit: str | Path | None = None) -> Path:
    """The registry root: --registry, else $T2_REGISTRY, else ./registry if it exists, else <t2 home>/registry."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV]).expanduser()
    local = Path.cwd() / "registry"
    if local.is_dir():
        return local
    return user_root()


@dataclass(frozen=True)
class ExpertRef:
    """One version of an expert in a registry."""

    path: Path
    name: str
    version: int
    model_slug: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def load(self, fingerprint: str | None = None) -> Expert:
        """The verified expert: what `t2 registry verify` checks is checked on every load."""
        expert = load_expert(self.path, fingerprint=fingerprint)
        check_placement(expert.manifest, self.model_slug, self.name, self.version, str(self.path))
        return expert

    def manifest(self) -> Manifest:
        """The validated manifest (its own checksum and its place in the registry), without reading z."""
        manifest = read_manifest(self.path)
        check_placement(manifest, self.model_slug, self.name, self.version, str(self.path))
        return manifest


def _known(names: list[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def pick(catalog: Catalog, spec: str, model_slug: str | None, where: str) -> tuple[str, str, int]:
    """(slug, name, version) that `spec` names in a catalog; `where` names the registry in errors.

    Shared by the local registry and the remotes, so both resolve names the same way.
    """
    name, version = parse_expert_spec(spec)
    if model_slug is None:
        slugs = sorted(slug for slug, experts in catalog.items() if name in experts)
        if len(slugs) > 1:
            raise BadInputError(f"expert {name!r} exists for several models ({', '.join(slugs)}); pass --model")
        if not slugs:
            known = [f"{n} ({slug})" if len(catalog) > 1 else n for slug, ex in catalog.items() for n in ex]
            raise NotFoundError(f"expert {name!r} not found in {where}; known: {_known(known)}")
        model_slug = slugs[0]
    experts = catalog.get(model_slug, {})
    if name not in experts:
        raise NotFoundError(f"expert {name!r} not found in {where}/{model_slug}; known: {_known(list(experts))}")
    versions = experts[name]
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise NotFoundError(
            f"{name}@{version} not found in {where}/{model_slug}; versions: {', '.join(map(str, versions))}"
        )
    return model_slug, name, version


@dataclass(frozen=True)
class ExpertSummary:
    """One row of `t2 registry list`: an expert with all its versions, described by the latest."""

    name: str
    model_slug: str
    versions: list[int]
    size_bytes: int
    base_model: str | None = None
    task: str | None = None
    metric: str | None = None
    metric_value: float | None = None
    description: str | None = None
    created: str | None = None
    # Set when the latest manifest cannot be read; `t2 registry verify` says more.
    problem: str | None = None


def check_placement(manifest: Manifest, model_slug: str, name: str, version: int, where: str) -> None:
    """A version folder must hold the manifest of that very slug, name and version."""
    found = (slugify(manifest.base_model), manifest.name, manifest.version)
    if found != (model_slug, name, version):
        raise IntegrityError(
            f"{where} holds {found[1]}@{found[2]} of {manifest.base_model}, not {name}@{version} of {model_slug}; "
            "it was moved or edited by hand"
        )


def _folder_size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.iterdir()) if folder.is_dir() else 0


def _copy_expert(source: Path, manifest: Manifest, text: bytes, destination: Path) -> None:
    """Copy exactly the files a manifest lists (never stray files or links) into a staging folder, each checked
    against its recorded size and checksum while it is copied; the manifest is written from the bytes already read.
    """
    for name, size in manifest.sizes.items():
        copy_verified(source / name, destination / name, size=size, sha256=expected_sha256(manifest, name))
    atomic_write(destination / MANIFEST_FILE, text)


class Registry:
    """Experts under one root folder, as `<model-slug>/<expert>/<version>/`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # ---- reading -------------------------------------------------------------------------------

    def catalog(self) -> Catalog:
        """Every complete version: dot-folders (staging, locks) and non-integer names are skipped."""
        catalog: Catalog = {}
        if not self.root.is_dir():
            return catalog
        for slug_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for expert_dir in sorted(p for p in slug_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                versions = sorted(
                    int(p.name) for p in expert_dir.iterdir() if p.is_dir() and VERSION_PATTERN.fullmatch(p.name)
                )
                if versions:
                    catalog.setdefault(slug_dir.name, {})[expert_dir.name] = versions
        return catalog

    def ref(self, model_slug: str, name: str, version: int) -> ExpertRef:
        return ExpertRef(self.root / model_slug / name / str(version), name, version, model_slug)

    def resolve(self, spec: str, model_slug: str | None = None) -> ExpertRef:
        """`name` (latest version) or `name@3`, optionally restricted to one model's experts."""
        return self.ref(*pick(self.catalog(), spec, model_slug, str(self.root)))

    def check_known(self, spec: str, what: str) -> None:
        """Refuse a `name[@V]` that no model here has, before a model is loaded to choose among models."""
        name, version = parse_expert_spec(spec)
        if not any(
            name in experts and (version is None or version in experts[name]) for experts in self.catalog().values()
        ):
            raise NotFoundError(f"{what} {spec}: no such expert in {self.root}; see `t2 registry list`")

    def list(self, model_slug: str | None = None) -> list[ExpertSummary]:
        summaries = []
        for slug, experts in self.catalog().items():
            if model_slug is not None and slug != model_slug:
                continue
            for name, versions in experts.items():
                folder = self.root / slug / name
                size = sum(_folder_size(folder / str(v)) for v in versions)
                try:
                    manifest = self.ref(slug, name, versions[-1]).manifest()
                except T2Error as error:
                    summaries.append(ExpertSummary(name, slug, versions, size, problem=str(error)))
                    continue
                metric = manifest.main_metric
                summaries.append(
                    ExpertSummary(
                        name=name,
                        model_slug=slug,
                        versions=versions,
                        size_bytes=size,
                        base_model=manifest.base_model,
                        task=manifest.task,
                        metric=metric[0] if metric else None,
                        metric_value=metric[1] if metric else None,
                        description=manifest.description,
                        created=manifest.created,
                    )
                )
        return summaries

    def verify(self, spec: str | None = None, model_slug: str | None = None) -> list[Problem]:
        """Check every version (or those of one expert, or one `name@V`); an empty list means all is well."""
        if not self.root.is_dir():
            raise NotFoundError(f"registry {self.root} does not exist; check --registry or $T2_REGISTRY")
        catalog = self.catalog()
        selected: list[tuple[str, str, int]] = []
        expert_folder = self.root
        if spec is None:
            selected = [
                (slug, name, v)
                for slug, experts in catalog.items()
                if model_slug is None or slug == model_slug
                for name, versions in experts.items()
                for v in versions
            ]
        else:
            slug, name, version = pick(catalog, spec, model_slug, str(self.root))
            expert_folder = self.root / slug / name
            explicit = parse_expert_spec(spec)[1] is not None
            selected = [(slug, name, v) for v in catalog[slug][name] if not explicit or v == version]
        problems = []
        for slug, name, version in selected:
            where = f"{slug}/{name}@{version}"
            try:
                self.ref(slug, name, version).load()
            except T2Error as error:
                problems.append(Problem(where, str(error)))
        if spec is None:
            problems += layout_problems(self.root, model_slug)
        else:
            problems += folder_problems(expert_folder)
        return problems

    # ---- writing -------------------------------------------------------------------------------

    def _locked(self, model_slug: str, name: str) -> AbstractContextManager[Path]:
        """Hold one expert's lock; its folder, with stale staging folders removed."""
        return expert_lock(self.root / model_slug / check_name(name), f"{model_slug}/{name}")

    def issued(self, model_slug: str, name: str) -> int:
        """The highest version number ever issued for an expert here (0 for none): present or removed."""
        return issued_version(self.root / model_slug / name)

    def _commit(self, folder: Path, version: int, write: Callable[[Path], None]) -> None:
        """Stage a version with `write` and rename it into place once it loads as an expert."""
        commit_version(folder, version, write, verify=load_expert)

    def publish(self, expert: Expert, *, extra_files: Mapping[str, Path] | None = None) -> ExpertRef:
        """Store an expert as the next version of its name, under its base model's slug.

        `extra_files` (registry file name -> source path, e.g. a PEFT adapter saved beside) are
        copied and checksummed in the same atomic step. The manifest's version is set here.
        """
        slug = slugify(expert.manifest.base_model)
        name = expert.manifest.name
        with self._locked(slug, name) as folder:
            version = self.issued(slug, name) + 1
            versioned = Expert(replace(expert.manifest, version=version), expert.z)
            self._commit(folder, version, lambda stage: save_expert_files(versioned, stage, extra_files=extra_files))
        return self.ref(slug, name, version)

    def import_version(self, source: Path, model_slug: str, name: str, version: int) -> tuple[ExpertRef, bool]:
        """Install a verified copy of an existing version (a pull, or a push to a file:// remote).

        Returns (ref, installed). The same version already present with the same checksums is a
        no-op (installed False); with other checksums it is refused: versions are never overwritten.
        """
        source = Path(source)
        manifest, text = read_manifest_text(source)
        check_placement(manifest, model_slug, name, version, str(source))
        ref = self.ref(model_slug, name, version)
        with self._locked(model_slug, name) as folder:
            if ref.path.exists():
                existing = read_manifest(ref.path)
                if (existing.sha256, existing.files) == (manifest.sha256, manifest.files):
                    return ref, False
                raise IntegrityError(
                    f"{name}@{version} ({model_slug}) already exists in {self.root} with other content; "
                    "versions are immutable: publish the new one under a new version"
                )
            self._commit(folder, version, lambda stage: _copy_expert(source, manifest, text, stage))
        return ref, True

    def adopt_version(self, source: Path, model_slug: str, name: str, version: int) -> ExpertRef | None:
        """Install a verified copy of a version whose number was never issued here; else None.

        How the bundled bank seeds the user-level registry: a number this registry already used,
        for a version it holds (the same or its own) or one it removed, is left alone, so a user's
        version is never overwritten and a removed one never comes back.
        """
        source = Path(source)
        manifest, text = read_manifest_text(source)
        check_placement(manifest, model_slug, name, version, str(source))
        with self._locked(model_slug, name) as folder:
            if version <= self.issued(model_slug, name):
                return None
            self._commit(folder, version, lambda stage: _copy_expert(source, manifest, text, stage))
        return self.ref(model_slug, name, version)

    def remove(self, spec: str, model_slug: str | None = None) -> ExpertRef:
        """Delete one version (`name@V` only); its number is never issued again."""
        if parse_expert_spec(spec)[1] is None:
            raise BadInputError(f"removing needs an explicit version: {spec}@N (see `t2 registry show {spec}`)")
        ref = self.resolve(spec, model_slug)
        with self._locked(ref.model_slug, ref.name) as folder:
            if not ref.path.is_dir():
                raise NotFoundError(f"{ref.spec} was removed by another process meanwhile")
            retire_version(folder, ref.version)
        return ref

    def gc(self) -> int:
        """Delete stale staging folders left by killed writers; returns how many were removed.

        Experts whose lock is held right now are skipped: their staging folder may be live.
        """
        return sweep_staging(self.root)
