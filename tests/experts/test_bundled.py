"""The bundled expert bank: seeding the user-level registry, and the wheel that ships the bank.

Every bank here is built in a temp folder, so nothing depends on which experts registry/ holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import t2cli
from t2cli.cli.app import app
from t2cli.experts import bundled as bank_module
from t2cli.experts.bundled import bundled_bank, open_registry, seed
from t2cli.experts.manifest_fields import Z_FILE
from t2cli.experts.registry import Registry, user_root
from tests.helpers import make_expert

REPO = Path(__file__).resolve().parents[2]


def make_bank(root: Path) -> Registry:
    """arc@1, arc@2 and gsm8k@1 of the tiny model, published as the bank's source would be."""
    bank = Registry(root)
    bank.publish(make_expert("arc", seed=0))
    bank.publish(make_expert("arc", seed=1))
    bank.publish(make_expert("gsm8k", seed=2, task="gsm8k"))
    return bank


def checksums(registry: Registry) -> dict[str, str]:
    return {
        f"{slug}/{name}@{v}": registry.ref(slug, name, v).manifest().sha256
        for slug, experts in registry.catalog().items()
        for name, versions in experts.items()
        for v in versions
    }


@pytest.fixture
def bank(tmp_path: Path) -> Registry:
    return make_bank(tmp_path / "bank")


@pytest.fixture
def home_registry(t2_home: Path) -> Registry:
    return Registry(t2_home / "registry")


def test_seed_imports_every_version_once_verified(bank: Registry, home_registry: Registry) -> None:
    result = seed(home_registry, bank.root)
    assert [ref.spec for ref in result.imported] == ["arc@1", "arc@2", "gsm8k@1"] and result.problems == []
    assert checksums(home_registry) == checksums(bank)
    assert home_registry.verify() == []
    again = seed(home_registry, bank.root)
    assert again.imported == [] and again.problems == []


def test_seed_never_overwrites_a_users_version_and_removed_ones_stay_removed(
    bank: Registry, home_registry: Registry
) -> None:
    own = home_registry.publish(make_expert("arc", seed=7)).manifest().sha256  # the user's arc@1, not the bank's
    result = seed(home_registry, bank.root)
    assert [ref.spec for ref in result.imported] == ["arc@2", "gsm8k@1"]
    assert home_registry.resolve("arc@1").manifest().sha256 == own != bank.resolve("arc@1").manifest().sha256
    home_registry.remove("gsm8k@1")
    assert seed(home_registry, bank.root).imported == []
    assert home_registry.catalog() == {"tiny-llama": {"arc": [1, 2]}}
    # A later t2 ships a newer version: it is imported, and the next publish goes after it.
    bank.publish(make_expert("arc", seed=3))
    assert [ref.spec for ref in seed(home_registry, bank.root).imported] == ["arc@3"]
    assert home_registry.publish(make_expert("arc", seed=4)).version == 4


def test_a_corrupt_bank_version_is_reported_and_skipped(bank: Registry, home_registry: Registry) -> None:
    z = bank.ref("tiny-llama", "arc", 2).path / Z_FILE
    z.write_bytes(z.read_bytes()[:-4])
    result = seed(home_registry, bank.root)
    assert [ref.spec for ref in result.imported] == ["arc@1", "gsm8k@1"]
    assert [p.where for p in result.problems] == ["tiny-llama/arc@2"] and "checksum" in result.problems[0].message
    assert home_registry.catalog() == {"tiny-llama": {"arc": [1], "gsm8k": [1]}}
    assert not list((home_registry.root / "tiny-llama" / "arc").glob(".staging-*"))


def test_open_registry_seeds_only_the_user_level_root(
    bank: Registry, t2_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bank_module, "bundled_bank", lambda: bank.root)
    monkeypatch.delenv("T2_REGISTRY", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    project = open_registry(tmp_path / "project")
    assert project.root == tmp_path / "project" and project.catalog() == {}
    (work / "registry").mkdir()
    assert open_registry().root == work / "registry" and open_registry().catalog() == {}
    assert not user_root().exists()
    # However the user-level registry is chosen (the fallback, or named), it holds the bank.
    assert open_registry(user_root()).catalog() == bank.catalog()
    (work / "registry").rmdir()
    shutil.rmtree(user_root())
    result = CliRunner().invoke(app, ["registry", "list", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["root"] == str(t2_home / "registry")
    assert [(e["name"], e["versions"]) for e in payload["experts"]] == [("arc", [1, 2]), ("gsm8k", [1])]


def test_doctor_reports_the_bank_and_its_bad_versions_without_importing(
    bank: Registry, t2_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from t2cli.doctor import collect

    monkeypatch.setattr(bank_module, "bundled_bank", lambda: bank.root)
    z = bank.ref("tiny-llama", "gsm8k", 1).path / Z_FILE
    z.write_bytes(z.read_bytes()[:-4])
    report = collect()
    assert (report.bank_root, report.bank_versions) == (str(bank.root), 3)
    assert [p for p in report.problems if "bundled" in p] == [
        f"bundled expert tiny-llama/gsm8k@1 cannot be used ({bank.verify()[0].message}); reinstall t2"
    ]
    assert not user_root().exists()  # a report changes nothing


def test_the_bundled_bank_of_this_copy() -> None:
    found = bundled_bank()
    package = Path(t2cli.__file__).resolve().parent
    # Installed from a wheel: the package data; from a source checkout: the checkout's registry/.
    assert found in (package / "bank", package.parent / "registry")


# ---- the wheel ------------------------------------------------------------------------------


def bank_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.glob("*/*/[0-9]*/*")}


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's build inputs with a small bank of its own, plus what a live registry also holds."""
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(REPO / "t2cli", source / "t2cli", ignore=shutil.ignore_patterns("__pycache__", "bank"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    make_bank(source / "registry")
    expert = source / "registry" / "tiny-llama" / "arc"
    (expert / ".staging-interrupted").mkdir()
    (expert / ".staging-interrupted" / Z_FILE).write_bytes(b"half")
    (expert / ".last-version").write_text("2\n")
    (expert / "draft").mkdir()  # not a version number: never part of the bank
    (expert / "draft" / "notes.txt").write_text("x")
    return source


def test_the_wheel_ships_the_bank_and_a_pip_install_sees_it(source_tree: Path, tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    dist = tmp_path / "dist"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(dist), str(source_tree)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("t2cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n.removeprefix("t2cli/bank/") for n in archive.namelist() if n.startswith("t2cli/bank/")}
    expected = bank_files(source_tree / "registry")
    assert shipped == expected and len(expected) == 6  # 3 versions x (manifest, z)

    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)], check=True)
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "T2_REGISTRY"} | {
        "T2_HOME": str(home),
        "PYTHONPATH": str(target),
    }
    script = (
        "import sys, t2cli.experts.bundled; print(t2cli.experts.bundled.bundled_bank(), file=sys.stderr); "
        "sys.argv = ['t2', 'registry', 'list', '--json']; from t2cli.cli.app import main; main()"
    )
    listed = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.strip() == str(target / "t2cli" / "bank")  # the installed copy, not this checkout
    payload = json.loads(listed.stdout)
    assert payload["root"] == str(home / "registry")
    assert [(e["name"], e["versions"]) for e in payload["experts"]] == [("arc", [1, 2]), ("gsm8k", [1])]
    installed = Registry(home / "registry")
    assert installed.verify() == [] and checksums(installed) == checksums(Registry(source_tree / "registry"))


def test_the_sdist_carries_the_bank_for_wheels_built_from_it(source_tree: Path, tmp_path: Path) -> None:
    script = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    built = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=source_tree, capture_output=True, text=True, check=True
    )
    with tarfile.open(tmp_path / built.stdout.strip().splitlines()[-1]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert "setup.py" in names and "MANIFEST.in" in names
    assert {f"registry/{name}" for name in bank_files(source_tree / "registry")} <= names
    assert not any(".staging-" in n or n.endswith((".lock", ".last-version")) for n in names)
