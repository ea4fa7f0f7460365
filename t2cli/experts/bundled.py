"""The bundled expert bank: the experts t2 ships, and seeding the user-level registry with them.

The repository's top-level `registry/` is the bank's source. A wheel carries a copy of its version
folders as package data, `t2cli/bank/<model-slug>/<expert>/<version>/` (see setup.py); a source
checkout (an editable install) uses `registry/` itself. The bank is never written to: its versions
reach users by being imported into <t2 home>/registry with the store's verified, atomic, locked
import, one version at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from t2cli.errors import T2Error
from t2cli.experts.registry import ExpertRef, Registry, resolve_root, user_root
from t2cli.experts.versions import Problem

BANK_DIR = "bank"


def bundled_bank() -> Path | None:
    """The bank this copy of t2 ships, or None: `t2cli/bank` when installed, a checkout's `registry/`."""
    package = Path(__file__).resolve().parent.parent  # t2cli/
    installed = package / BANK_DIR
    if installed.is_dir():
        return installed
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "registry").is_dir():
        return checkout / "registry"
    return None


def bank_versions(bank: Path) -> list[ExpertRef]:
    """Every complete version in a bank, in order (model slug, expert, version)."""
    source = Registry(bank)
    return [
        source.ref(slug, name, version)
        for slug, experts in source.catalog().items()
        for name, versions in experts.items()
        for version in versions
    ]


@dataclass
class SeedResult:
    """What seeding did: the versions it imported, and the bank versions it could not import."""

    imported: list[ExpertRef] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def seed(registry: Registry, bank: Path) -> SeedResult:
    """Import each bank version whose number `registry` has never issued for that expert.

    A version the registry holds, its own or an earlier import, and a version it removed are left
    alone: nothing is overwritten and nothing removed comes back. Each import is verified against
    its checksums before it appears. A bank version that fails (corrupt, misplaced, or a registry
    that cannot be written) is reported in the result and skipped, so commands still run.
    """
    result = SeedResult()
    for version in bank_versions(bank):
        try:
            if version.version <= registry.issued(version.model_slug, version.name):
                continue  # the cheap check, without the lock; adopt_version repeats it under the lock
            adopted = registry.adopt_version(version.path, version.model_slug, version.name, version.version)
        except (T2Error, OSError) as error:
            result.problems.append(Problem(f"{version.model_slug}/{version.spec}", str(error)))
            continue
        if adopted is not None:
            result.imported.append(adopted)
    return result


def open_registry(explicit: str | Path | None = None) -> Registry:
    """The registry at resolve_root(explicit); the user-level one first takes in the bundled bank.

    Whichever rule picks <t2 home>/registry, bundled versions whose numbers it has never issued are
    imported into it (see t2cli.experts.bundled), so a pip-installed t2 starts with the experts it ships.
    Every other root is used exactly as it is.
    """
    registry = Registry(resolve_root(explicit))
    bank = bundled_bank()
    if bank is not None and registry.root.resolve() == user_root().resolve():
        seed(registry, bank)
    return registry
