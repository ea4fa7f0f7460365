"""Build step: the wheel carries the bundled expert bank, registry/, as package data in t2cli/bank/.

Everything else about the package is declared in pyproject.toml. Only complete version folders
are copied (`<model-slug>/<expert>/<N>/`); locks, `.last-version` and staging folders of a write in
progress are left out. Editable installs read registry/ in place (t2cli.experts.bundled.bundled_bank).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).resolve().parent / "registry"
VERSION_DIR = re.compile(r"[1-9][0-9]*")


def bank_files(source: Path) -> list[Path]:
    """The files of every complete version under `source`, relative to it."""
    files = []
    for version in sorted(source.glob("*/*/*")):
        slug, expert = version.parent.parent.name, version.parent.name
        if slug.startswith(".") or expert.startswith(".") or not VERSION_DIR.fullmatch(version.name):
            continue
        files += [p.relative_to(source) for p in sorted(version.iterdir()) if p.is_file() and p.name[:1] != "."]
    return files


class BuildPyWithBank(build_py):
    """build_py, then a fresh copy of the bank into the build folder (stale files from a removed version go)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode or not SOURCE.is_dir():
            return
        target = Path(self.build_lib) / "t2cli" / "bank"
        shutil.rmtree(target, ignore_errors=True)
        for relative in bank_files(SOURCE):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SOURCE / relative, target / relative)


setup(cmdclass={"build_py": BuildPyWithBank})
