"""Plug-ins: a third-party distribution registers a task, a router, an engine and an export format through
entry points, and t2 lists and uses them (the CLI's choices and help, `t2 doctor`); a broken one is one
warning line. The distribution is a dist-info folder on sys.path, as pip would install it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from t2cli.adapt.options import StrategyOptions
from t2cli.adapt.prepare import make_router
from t2cli.adapt.strategies import ROUTERS
from t2cli.engines import ENGINES, check_engine, make_engine
from t2cli.errors import BadInputError, NotFoundError
from t2cli.experts.formats import EXPORTERS
from t2cli.tasks.registry import TASKS, get_task

# The same code docs/architecture.md shows ("Adding a plug-in").
PLUGIN = '''
import json
from pathlib import Path

from t2cli.adapt.routers import BASE, FixedRouter
from t2cli.errors import BadInputError
from t2cli.experts.formats.base import ExportResult, staged, write_record
from t2cli.tasks.gsm8k import Gsm8kTask


class KeywordRouter:
    """--adapt keyword: every prompt keeps the base weights (a router needs only these four members)."""

    name = "keyword"
    options = ("route_tokens",)

    @classmethod
    def check(cls, options):
        if options.route_tokens == 1:
            raise BadInputError("keyword needs --route-tokens other than 1")

    @classmethod
    def build(cls, context):
        return FixedRouter(BASE, note=f"keyword router over {context.options.route_tokens} tokens")


class EchoEngine:
    """--engine echo: answers every prompt with the prompt itself."""

    name = "echo"
    batch_size = 1
    mixed_batches = False
    loads_weights_itself = False
    tensor_parallel = False
    auto_priority = None  # never picked by --engine auto

    @classmethod
    def unavailable(cls):
        return None

    @classmethod
    def start(cls, loaded, *, batch_size, tensor_parallel):
        return cls()

    def generate(self, prompts, sampling):
        return [str(prompt) for prompt in prompts]

    def set_expert(self, z, rule="none"):
        pass


class ZJsonFormat:
    """--format z-json: the expert's z as a JSON object of lists."""

    name = "z-json"
    budget = False

    @classmethod
    def export(cls, loaded, expert, factors, expert_folder, output, *, rank, energy):
        with staged(output) as folder:
            z = {name: vector.tolist() for name, vector in expert.z.items()}
            (folder / "z.json").write_text(json.dumps(z))
            write_record(folder, expert, cls.name, {})
        return ExportResult(cls.name, Path(output), expert.manifest.ref)

    @classmethod
    def load(cls, loaded, folder):
        return loaded


class ShortGsm8k(Gsm8kTask):
    """--task gsm8k-short: GSM8K under another name."""

    name = "gsm8k-short"
'''

ENTRY_POINTS = """[t2cli.routers]
keyword = t2_demo_plugin:KeywordRouter

[t2cli.engines]
echo = t2_demo_plugin:EchoEngine
broken = t2_demo_missing:Engine

[t2cli.exporters]
z-json = t2_demo_plugin:ZJsonFormat

[t2cli.tasks]
gsm8k-short = t2_demo_plugin:ShortGsm8k
"""

REGISTRIES = (ROUTERS, ENGINES, EXPORTERS, TASKS)


def install(root: Path) -> Path:
    """t2-demo-plugin 0.1 installed into `root`: its module and its dist-info (metadata, entry points)."""
    info = root / "t2_demo_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (root / "t2_demo_plugin.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: t2-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = install(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    for registry in REGISTRIES:
        registry.refresh()
    yield root
    monkeypatch.undo()
    sys.modules.pop("t2_demo_plugin", None)
    for registry in REGISTRIES:
        registry.refresh()


def test_each_kind_sees_the_distributions_entries_after_its_own(plugin: Path) -> None:
    assert ROUTERS.names() == ["prompt", "classifier", "few-shot", "probe", "keyword"]
    assert ENGINES.names() == ["hf", "vllm", "echo", "broken"]
    assert EXPORTERS.names() == ["peft-lora", "merged", "z-json"]
    assert TASKS.names()[-1] == "gsm8k-short"
    origins = {info.name: info.origin for registry in REGISTRIES for info in registry.infos()}
    assert origins["keyword"] == origins["z-json"] == "t2-demo-plugin 0.1" and origins["prompt"] == "t2cli"


def test_the_plugins_work_end_to_end(plugin: Path) -> None:
    options = StrategyOptions(route_tokens=8)
    options.check("keyword")
    with pytest.raises(BadInputError, match="keyword needs"):
        StrategyOptions(route_tokens=1).check("keyword")
    router = make_router("keyword", slot=None, loaded=None, registry=None, options=options)  # type: ignore[arg-type]
    assert router.note == "keyword router over 8 tokens" and router.decide(["hi"])[0].expert is None
    assert check_engine("echo") == "echo"
    with pytest.raises(BadInputError, match="--tp needs the vllm engine"):
        check_engine("echo", 2)
    assert make_engine("echo", SimpleNamespace(source=None)).generate(["ping"], None) == ["ping"]
    assert get_task("gsm8k-short").name == "gsm8k-short"


def test_the_plugin_format_exports_an_expert(plugin: Path, tmp_path: Path) -> None:
    from t2cli.experts.export import export_expert
    from tests.helpers import make_expert

    expert = make_expert()
    result = export_expert(None, expert, {}, tmp_path, tmp_path / "out", "z-json")  # type: ignore[arg-type]
    assert result.format == "z-json" and set(json.loads((tmp_path / "out" / "z.json").read_text())) == set(expert.z)
    with pytest.raises(BadInputError, match="--rank and --energy apply to --format peft-lora only"):
        export_expert(None, expert, {}, tmp_path, tmp_path / "again", "z-json", rank=4)  # type: ignore[arg-type]


def test_a_broken_plugin_is_one_warning_line(plugin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert [name for name, _ in ENGINES.loaded()] == ["hf", "vllm", "echo"]
    with pytest.raises(NotFoundError, match="engine 'broken' \\(t2-demo-plugin 0.1\\) does not load"):
        ENGINES.get("broken")
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: engine plug-in 'broken' from t2-demo-plugin 0.1")


def t2(plugin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "400",
    }
    return subprocess.run([sys.executable, "-m", "t2cli", *args], capture_output=True, text=True, env=env, check=False)


def test_the_cli_offers_them_in_its_choices_and_help(plugin: Path) -> None:
    run = t2(plugin, "run", "--help")
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    assert "none, prompt, classifier, few-shot, probe, keyword, or an expert name" in text
    assert "prompt, classifier, keyword: pass 1 reads only the first N tokens" in text
    assert "one of: hf, vllm, echo, broken" in text
    export = " ".join(t2(plugin, "export", "--help").stdout.split())
    assert "One of: peft-lora, merged, z-json" in export
    doctor = t2(plugin, "doctor")
    assert doctor.returncode == 0
    report = " ".join(doctor.stdout.split())
    assert "keyword (t2-demo-plugin 0.1)" in report and "z-json (t2-demo-plugin 0.1)" in report
    assert "engine plug-in 'broken' from t2-demo-plugin 0.1 does not load" in report
