"""README.md stays the front door: short, its docs/ links resolve, and CI can still find the test command."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.experts.test_remotes import hub  # noqa: F401  (hub: the Hub stand-in fixture)

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAX_LINES = 300
DOCS_LINK = re.compile(r"\]\((docs/[^)#\s]+\.md)(?:#[^)\s]*)?\)")


def test_readme_is_at_most_300_lines() -> None:
    count = len(README.read_text().splitlines())
    assert count <= MAX_LINES, f"README.md has {count} lines (limit {MAX_LINES}); move reference text to docs/"


def test_every_docs_link_in_the_readme_exists() -> None:
    links = set(DOCS_LINK.findall(README.read_text()))
    assert {"docs/cli.md", "docs/benchmarks.md", "docs/format.md"} <= links
    missing = sorted(link for link in links if not (REPO / link).is_file())
    assert not missing, f"README.md links to missing files: {missing}"


def test_the_test_command_follows_its_marker() -> None:
    # .ci/run takes the second line after the marker (the first is the fence) and runs it verbatim.
    lines = README.read_text().splitlines()
    marker = lines.index("<!-- test-command -->")
    assert lines[marker + 1] == "```bash" and lines[marker + 3] == "```"
    assert lines[marker + 2].startswith("pip install ") and "python -m pytest" in lines[marker + 2]


def test_nothing_a_user_reads_names_a_folder_beside_the_checkout() -> None:
    # ../shared exists only next to the project's own checkout; users have the Hub and the packages.
    read = [README, *(REPO / "docs" / name for name in ("guide.md", "cli.md", "tasks.md"))]
    read += sorted((REPO / "t2cli").rglob("*.py")) + sorted((REPO / "recipes").rglob("*.yaml"))
    assert [str(path.relative_to(REPO)) for path in read if "../shared" in path.read_text()] == []


# ---- every README command block, run as typed -------------------------------------------------------------

BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
MAX_NEW_TOKENS = 2  # generation is cut to this many tokens, training to one step: the commands, not the model


def readme_commands() -> list[list[list[str]]]:
    """Each command line of the README's ```bash blocks, as its pipeline of `&&`-chained segments (argv lists);
    the test-command block (installs and pytest: what CI runs) and install segments are left out."""
    import shlex

    lines: list[list[list[str]]] = []
    for block in BASH_BLOCK.findall(README.read_text()):
        if "python -m pytest" in block:
            continue
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            segments: list[list[str]] = [[]]
            for word in words:
                if word == "&&":
                    segments.append([])
                else:
                    segments[-1].append(word)
            kept = [segment for segment in segments if segment and segment[0] not in ("pip", "python")]
            if kept:
                lines.append(kept)
    return lines


def test_the_readme_blocks_hold_the_commands_this_test_runs() -> None:
    commands = [" ".join(segment) for line in readme_commands() for segment in line]
    assert "t2 --threads 2 run examples/prompts.jsonl" in commands  # the set-up line, installs left out
    assert all(command.startswith(("t2 ", "accelerate launch ")) for command in commands), commands
    assert len(commands) >= 25


def t2_words(segment: list[str]) -> list[str]:
    """t2's arguments in a README segment: after `t2`, or after `accelerate launch … -m t2cli`."""
    if segment[0] == "accelerate":
        return segment[segment.index("t2cli") + 1 :]
    return segment[1:]


def test_every_readme_command_names_real_commands_options_and_files() -> None:
    """Fast, always: each command's sub-commands and options exist (click stops at --help only after
    every option parsed), and every file it names in the repository is there."""
    from typer.testing import CliRunner

    from t2cli.cli.app import app

    for line in readme_commands():
        for segment in line:
            words = t2_words(segment)
            if "|" in words:
                words = words[: words.index("|")]
            result = CliRunner().invoke(app, [*words, "--help"])
            assert result.exit_code == 0, f"{' '.join(segment)}\n{result.output}"
            named = [word for word in words if word.startswith(("examples/", "recipes/"))]
            assert all((REPO / word).exists() for word in named), " ".join(segment)


def _arc_parquet(numbers: range) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "id": f"q{n}",
            "question": f"Which of these is number {n}?",
            "choices": {"text": [f"number {n}", "a stone", "the sky"], "label": ["A", "B", "C"]},
            "answerKey": "A",
        }
        for n in numbers
    ]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


@pytest.mark.real_model
@pytest.mark.skipif(
    not os.environ.get("T2_README_RUN"), reason="minutes on a CPU: set T2_README_RUN=1 to run every README command"
)
def test_every_readme_command_runs_as_typed(
    request: pytest.FixtureRequest, smollm2_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new user's session: every README command, in order, in a fresh t2 home and working folder, with the
    Hub served by the local stand-in (ARC-Easy at the commit t2 pins). Training runs one step and generation
    stops after MAX_NEW_TOKENS tokens; what is checked is that each command finds its files, data and experts
    and exits 0. Still minutes on 2 CPU cores (the first `t2 run` took 201 s with the SVD cache cold, the
    next ones 40-70 s under load), hence opt-in: T2_README_RUN=1."""
    import dataclasses
    import json
    import shutil
    import subprocess
    import time

    import torch
    from typer.testing import CliRunner

    from t2cli.cli.app import app
    from t2cli.engines.hf import HFEngine
    from t2cli.tasks import arc

    request.getfixturevalue("smollm2")  # the model, converted once per session
    from tests.experts.test_remotes import FakeRepo

    standin = request.getfixturevalue("hub")
    commit = arc.HUB.rpartition("@")[2]
    splits = {"train": range(24), "validation": range(24, 32), "test": range(32, 40)}
    files = {f"ARC-Easy/{split}-00000-of-00001.parquet": _arc_parquet(numbers) for split, numbers in splits.items()}
    standin.repos["allenai/ai2_arc"] = FakeRepo(commits={commit: files}, branches={"main": commit})

    home = tmp_path / "home"
    home.mkdir()
    for shared in ("models", "svd"):  # converted once per session; the rest of the home starts empty
        (smollm2_home / shared).mkdir(exist_ok=True)
        (home / shared).symlink_to(smollm2_home / shared)
    monkeypatch.setenv("T2_HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    for folder in ("examples", "recipes"):
        (work / folder).symlink_to(REPO / folder)
    monkeypatch.chdir(work)

    generate = HFEngine._generate

    def short(self, model, prompts, sampling, adapter_names):  # type: ignore[no-untyped-def]
        capped = dataclasses.replace(sampling, max_new_tokens=min(sampling.max_new_tokens, MAX_NEW_TOKENS))
        return generate(self, model, prompts, capped, adapter_names)

    monkeypatch.setattr(HFEngine, "_generate", short)
    skipped: list[str] = []
    for line in readme_commands():
        for segment in line:
            command, words, tail = " ".join(segment), t2_words(segment), []
            if segment[0] == "accelerate":  # one process per GPU
                skipped.append(f"{command} (a multi-GPU launch)")
                continue
            if "|" in words:
                words, tail = words[: words.index("|")], words[words.index("|") + 1 :]
            if "cuda" in words and not torch.cuda.is_available():
                skipped.append(f"{command} (no CUDA GPU)")
                continue
            if "gemma3-270m" in words and not _installed("gemma3-270m"):
                skipped.append(f"{command} (gemma3-270m's packages are not installed)")
                continue
            if _subcommand(words) == "serve":  # runs until stopped; tests/serve/ starts and stops it
                skipped.append(f"{command} (a server: runs until stopped)")
                continue
            if _subcommand(words) == "train":
                words = [*words, "--steps", "1"]
            started = time.perf_counter()
            result = CliRunner().invoke(app, words)
            if os.environ.get("T2_README_TIMES"):  # where the minute goes, one line per command
                with open(os.environ["T2_README_TIMES"], "a") as log:
                    log.write(f"{time.perf_counter() - started:6.1f} s  {command}\n")
            assert result.exit_code == 0, f"{command}\n{result.output}"
            if tail and shutil.which(tail[0]):
                piped = subprocess.run(tail, input=result.stdout, capture_output=True, text=True, check=False)
                assert piped.returncode == 0 and json.loads(piped.stdout), f"{command}\n{piped.stderr}"
            elif tail:  # no jq here: the JSON it would read is there
                assert json.loads(result.stdout), command
    assert len(skipped) <= 4, skipped


def _installed(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _subcommand(words: list[str]) -> str | None:
    """The command after t2's global options (`--threads N`, `--device D`, `--dtype T`, flags)."""
    position = 0
    while position < len(words) and words[position].startswith("-"):
        position += 2 if words[position] in ("--threads", "--device", "--dtype") else 1
    return words[position] if position < len(words) else None
