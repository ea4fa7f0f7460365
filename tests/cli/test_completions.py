"""Static completion scripts: the committed copies match the live command tree, parse, and complete."""

from __future__ import annotations

import enum
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer

from t2cli.cli.app import live_tree
from t2cli.cli.command_tree import CommandSpec, ValueSpec, command_tree
from t2cli.cli.completion_scripts import REGENERATE_COMPLETIONS
from t2cli.cli.completions import SCRIPT_FILES, main, render_scripts

COMMITTED = Path(__file__).resolve().parents[2] / "completions"


class Color(str, enum.Enum):
    red = "red"
    green = "green"


def demo_app() -> typer.Typer:
    """Every parameter shape the generator handles, in a throwaway app (the live one has no choices)."""
    app = typer.Typer(name="t2")

    @app.callback()
    def root(
        level: Annotated[int, typer.Option("--level", help="A number.")] = 0,
        verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
    ) -> None: ...

    @app.command("paint", help="Paint things.")
    def paint(
        name: Annotated[str, typer.Argument()],
        files: Annotated[list[Path] | None, typer.Argument()] = None,
        color: Annotated[Color, typer.Option("--color", "-c", help="Which [colour]: red or green's.")] = Color.red,
        mode: Annotated[Literal["fast", "slow"], typer.Option("--mode")] = "fast",
        out: Annotated[Path | None, typer.Option("--out-dir", file_okay=False)] = None,
        log: Annotated[typer.FileText | None, typer.Option("--log")] = None,
        size: Annotated[tuple[int, int], typer.Option("--size")] = (1, 1),
        tag: Annotated[list[str] | None, typer.Option("--tag", "-t")] = None,
        dry: Annotated[bool, typer.Option("--dry/--wet")] = False,
        secret: Annotated[bool, typer.Option("--secret", hidden=True)] = False,
    ) -> None: ...

    @app.command("hidden", hidden=True)
    def hidden() -> None: ...

    group = typer.Typer()

    @group.command("leaf")
    def leaf(kind: Annotated[Color, typer.Argument()]) -> None: ...

    app.add_typer(group, name="group", help="A group.")
    return app


def demo_tree() -> CommandSpec:
    return command_tree(typer.main.get_command(demo_app()))


@pytest.fixture(scope="module")
def live_scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("live")
    for name, text in render_scripts(live_tree()).items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def demo_scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    for name, text in render_scripts(demo_tree()).items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder to complete file names in: a file, a folder, and another file."""
    (tmp_path / "apple.txt").write_text("")
    (tmp_path / "apricots").mkdir()
    (tmp_path / "banana.txt").write_text("")
    return tmp_path


def needs(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed here")
    return path


# --- generation ------------------------------------------------------------------------------------


def test_committed_scripts_are_up_to_date() -> None:
    for name, text in render_scripts(live_tree()).items():
        committed = COMMITTED / name
        assert committed.exists(), f"completions/{name} is missing; run: {REGENERATE_COMPLETIONS}"
        assert committed.read_text() == text, f"completions are out of date; run: {REGENERATE_COMPLETIONS}"


def test_live_tree_has_nested_commands_and_global_options_only_at_the_root() -> None:
    tree = live_tree()
    commands = {c.key: c for c in tree.walk()}
    assert "t2 registry list" in commands
    root_names = {n for o in tree.options for n in o.names}
    assert {"--threads", "--debug", "--quiet", "-q", "--version"} <= root_names
    decompose_names = {n for o in commands["t2 decompose"].options for n in o.names}
    assert "--targets" in decompose_names and "--threads" not in decompose_names


def test_tree_reads_choices_paths_flags_and_arities() -> None:
    tree = demo_tree()
    commands = {c.key: c for c in tree.walk()}
    assert set(commands) == {"t2", "t2 paint", "t2 group", "t2 group leaf"}  # hidden command left out
    paint = {o.names[0]: o for o in commands["t2 paint"].options}
    assert "--secret" not in paint
    assert paint["--color"].names == ("--color", "-c")
    assert paint["--color"].value == ValueSpec("color", "choice", ("red", "green"))
    assert paint["--mode"].value == ValueSpec("mode", "choice", ("fast", "slow"))
    assert paint["--out-dir"].value == ValueSpec("out-dir", "dir")
    assert paint["--log"].value == ValueSpec("log", "file")
    assert (paint["--size"].nargs, paint["--size"].value.kind) == (2, "text")
    assert paint["--tag"].multiple and paint["--tag"].nargs == 1
    assert paint["--dry"].names == ("--dry", "--wet") and paint["--dry"].nargs == 0 and paint["--dry"].value is None
    verbose = next(o for o in tree.options if o.names[0] == "--verbose")
    assert verbose.nargs == 0 and verbose.multiple
    assert [(a.value.kind, a.nargs) for a in commands["t2 paint"].arguments] == [("text", 1), ("file", -1)]
    assert commands["t2 group leaf"].arguments[0].value.choices == ("red", "green")
    assert commands["t2 group"].help == "A group."


def test_a_choice_the_shells_cannot_take_is_refused() -> None:
    app = typer.Typer()

    @app.command()
    def only(mode: Annotated[Literal["a b", "c"], typer.Option("--mode")] = "c") -> None: ...

    with pytest.raises(ValueError, match="'a b' cannot go into a completion script"):
        command_tree(typer.main.get_command(app))


def test_main_writes_the_three_scripts(tmp_path: Path) -> None:
    assert main([str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(SCRIPT_FILES.values())
    for name, text in render_scripts(live_tree()).items():
        assert (tmp_path / "out" / name).read_text() == text
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o644


# --- syntax -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "flag", "script"),
    [("bash", "-n", "bash"), ("zsh", "-n", "zsh"), ("fish", "--no-execute", "fish")],
)
@pytest.mark.parametrize("which", ["live_scripts", "demo_scripts"])
def test_scripts_parse(shell: str, flag: str, script: str, which: str, request: pytest.FixtureRequest) -> None:
    executable = needs(shell)
    path = request.getfixturevalue(which) / SCRIPT_FILES[script]
    result = subprocess.run([executable, flag, str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# --- behaviour --------------------------------------------------------------------------------------


def bash_complete(script: Path, words: list[str], cwd: Path | None = None) -> list[str]:
    """COMPREPLY after setting COMP_WORDS to the words (the last one is under the cursor)."""
    program = 'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _t2_completion; printf "%s\\n" "${COMPREPLY[@]}"'
    result = subprocess.run(
        [needs("bash"), "--norc", "--noprofile", "-c", program, str(script), *words],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
        check=True,
    )
    return sorted(line for line in result.stdout.splitlines() if line)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["t2", "reg"], ["registry"]),
        (["t2", "--t"], ["--threads"]),  # global options before the command...
        (["t2", "decompose", "--t"], ["--targets"]),  # ...and after it only the command's own
        (["t2", "--threads", ""], []),  # a value goes here, not a command
        (["t2", "--threads", "2", "-q", "reg"], ["registry"]),
        (["t2", "registry", "list", "--j"], ["--json"]),
        (["t2", "registry", "list", "-m", "x", "--reg"], ["--registry"]),
        (["t2", "registry", "push", "--m"], ["--model"]),
    ],
)
def test_bash_completes_the_live_tree(live_scripts: Path, words: list[str], expected: list[str]) -> None:
    assert bash_complete(live_scripts / "t2.bash", words) == expected


def test_bash_offers_sub_commands_and_every_top_command(live_scripts: Path) -> None:
    tree = live_tree()
    registry = next(c for c in tree.commands if c.path[-1] == "registry")
    assert bash_complete(live_scripts / "t2.bash", ["t2", "registry", ""]) == sorted(
        c.path[-1] for c in registry.commands
    )
    assert bash_complete(live_scripts / "t2.bash", ["t2", ""]) == sorted(c.path[-1] for c in tree.commands)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["t2", "paint", "--color", ""], ["green", "red"]),
        (["t2", "paint", "-c", "g"], ["green"]),
        (["t2", "paint", "--mode", "="], ["fast", "slow"]),  # bash splits --mode= at "="
        (["t2", "paint", "--mode", "=", "s"], ["slow"]),
        (["t2", "paint", "--out-dir", "ap"], ["apricots"]),
        (["t2", "paint", "--log", "ap"], ["apple.txt", "apricots"]),
        (["t2", "paint", "--size", "1", "2", "--c"], ["--color"]),  # both values of --size skipped
        (["t2", "paint", "--size", "1", ""], []),
        (["t2", "paint", "ap"], []),  # NAME is free text
        (["t2", "paint", "name", "ap"], ["apple.txt", "apricots"]),  # then FILES...
        (["t2", "paint", "name", "--dry", "a.txt", "b"], ["banana.txt"]),
        (["t2", "paint", "--w"], ["--wet"]),
        (["t2", "paint", "--s"], ["--size"]),  # the hidden --secret is not offered
        (["t2", "-v", "-v", "group", "leaf", ""], ["green", "red"]),
        (["t2", "h"], []),  # hidden command
    ],
)
def test_bash_completes_choices_files_and_arities(
    demo_scripts: Path, workdir: Path, words: list[str], expected: list[str]
) -> None:
    assert bash_complete(demo_scripts / "t2.bash", words, cwd=workdir) == expected


def fish_complete(script: Path, line: str, cwd: Path | None = None) -> list[str]:
    program = 'source $argv[1]; complete -C"$argv[2]"'
    result = subprocess.run(
        [needs("fish"), "--no-config", "-c", program, str(script), line],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
        check=True,
    )
    return sorted(line.split("\t")[0] for line in result.stdout.splitlines() if line)


@pytest.mark.parametrize(
    ("which", "line", "expected"),
    [
        ("live_scripts", "t2 reg", ["registry"]),
        ("live_scripts", "t2 decompose --t", ["--targets"]),
        ("live_scripts", "t2 --threads 2 -q registry list --j", ["--json"]),
        ("demo_scripts", "t2 paint --color ", ["green", "red"]),
        ("demo_scripts", "t2 paint --out-dir ap", ["apricots/"]),
        ("demo_scripts", "t2 paint --size 1 2 --c", ["--color"]),
        ("demo_scripts", "t2 paint name ap", ["apple.txt", "apricots/"]),
        ("demo_scripts", "t2 group leaf ", ["green", "red"]),
    ],
)
def test_fish_completes(
    which: str, line: str, expected: list[str], workdir: Path, request: pytest.FixtureRequest
) -> None:
    assert fish_complete(request.getfixturevalue(which) / "t2.fish", line, cwd=workdir) == expected


# Runs an interactive zsh in a pseudo-terminal with the script's folder on $fpath, types the line and
# TAB, and prints every match compadd is given (after zsh-capture-completion, by Valodim).
ZSH_CAPTURE = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PROMPT= ; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z 'bindkey "^I" complete-word; zstyle ":completion:*" insert-tab false'
zpty -w z 'null-line () { echo -E - $'"'"'\0'"'"' }; compprefuncs=(null-line); comppostfuncs=(null-line exit)'
zpty -w z 'compadd () { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi;
  typeset -a hits; builtin compadd -A hits "$@"; local h; for h in $hits; do echo -E - "MATCH:$h"; done }'
zpty -w z "$2"$'\t'
integer marks=0
while zpty -r z; do :; done | while IFS= read -r line; do
    if [[ $line == *$'\0\r' ]]; then
        (( marks++ )) && exit 0 || continue
    fi
    (( marks )) && [[ $line == MATCH:* ]] && echo -E - ${${line#MATCH:}%$'\r'}
done
"""


@pytest.mark.parametrize(
    ("which", "line", "expected"),
    [
        ("live_scripts", "t2 decompose --t", ["--targets"]),
        ("live_scripts", "t2 --threads 2 reg", ["registry"]),
        ("demo_scripts", "t2 paint --mode=", ["fast", "slow"]),
    ],
)
def test_zsh_completes(which: str, line: str, expected: list[str], request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(which)
    result = subprocess.run(
        [needs("zsh"), "-f", "-c", ZSH_CAPTURE, "capture", str(folder), line],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert sorted(set(result.stdout.split())) == expected, result.stderr
