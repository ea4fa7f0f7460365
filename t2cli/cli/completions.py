"""Static bash, zsh and fish completion scripts for `t2`, generated from the live command tree.

Click's own completion calls back into `t2` on every TAB, which imports the CLI (and, behind some
commands, torch); static scripts answer instantly, and a test regenerates them in memory to catch a
committed copy that no longer matches the commands. Regenerate the committed copies with:

    python -m t2cli.cli.completions completions/

The scripts' text comes from t2cli.cli.completion_scripts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from t2cli.cli.app import live_tree
from t2cli.cli.command_tree import CommandSpec
from t2cli.cli.completion_scripts import bash_script, fish_script, zsh_script

SCRIPT_FILES = {"bash": "t2.bash", "zsh": "_t2", "fish": "t2.fish"}


def render_scripts(tree: CommandSpec) -> dict[str, str]:
    """File name -> content of the three scripts."""
    return {
        SCRIPT_FILES["bash"]: bash_script(tree),
        SCRIPT_FILES["zsh"]: zsh_script(tree),
        SCRIPT_FILES["fish"]: fish_script(tree),
    }


def write_scripts(directory: Path, scripts: dict[str, str]) -> list[Path]:
    from t2cli.fsutil import atomic_write

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in scripts.items():
        atomic_write(directory / name, text.encode())
        # atomic_write's temp file is private (0600); any user's shell may read a completion script
        (directory / name).chmod(0o644)
        paths.append(directory / name)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m t2cli.cli.completions", description="Write static bash, zsh and fish completion scripts for t2."
    )
    parser.add_argument("directory", type=Path, help="Folder for t2.bash, _t2 and t2.fish (the repo's: completions/).")
    args = parser.parse_args(argv)
    for path in write_scripts(args.directory, render_scripts(live_tree())):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
