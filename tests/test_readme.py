"""README.md stays the front door: short, its docs/ links resolve, and CI can still find the test command."""

from __future__ import annotations

import re
from pathlib import Path

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
