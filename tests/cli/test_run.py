"""`t2 dispatch` and `t2 run` end to end on a tiny model saved as a folder, with a registry in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model
from tests.helpers import publish_expert, tiny_cli_world, write_shots

PROMPTS = [
    {"id": "m1", "prompt": "what is 2 plus 3?", "task": "gsm8k", "answer": "2 + 3 = 5\n#### 5"},
    {"id": "s1", "messages": [{"role": "user", "content": "is ice cold? a. yes b. no"}], "task": "arc"},
    {"id": "c1", "prompt": "hello there", "task": "chitchat"},
    {"id": "m2", "prompt": "what is 4 plus 4?"},
]


@pytest.fixture
def world(tmp_path: Path, t2_home: Path) -> dict:
    return tiny_cli_world(tmp_path, PROMPTS)


def invoke(world: dict, *args: str):
    return CliRunner().invoke(app, [*args, "--model", world["model"], "--registry", world["registry"]])


def test_dispatch_prints_routing_confusion_and_writes_decisions(world) -> None:
    decisions = world["tmp"] / "decisions.jsonl"
    result = invoke(world, "dispatch", str(world["prompts"]), "--adapt", "prompt", "-o", str(decisions), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["decisions"] == 4 and sum(summary["experts"].values()) == 4
    assert summary["labelled"] == 3 and set(summary["confusion"]) == {"gsm8k", "arc", "other"}
    rows = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert [(r["line"], r["id"], r["task"]) for r in rows] == [(1, "m1", "gsm8k"), (2, "s1", "arc"),
                                                               (3, "c1", "chitchat"), (4, "m2", None)]  # fmt: skip
    assert all(set(r["scores"]) == {"arc", "gsm8k", "other"} and r["label"] in r["scores"] for r in rows)

    table = invoke(world, "dispatch", str(world["prompts"]), "--adapt", "prompt")
    assert table.exit_code == 0, table.output
    assert "routing accuracy" in table.stdout and "true \\ chosen" in table.stdout


def test_run_writes_every_line_in_input_order_then_resumes_for_free(world) -> None:
    output = world["tmp"] / "out.jsonl"
    args = ("run", str(world["prompts"]), "--adapt", "prompt", "-o", str(output), "--max-new-tokens", "3", "--json")
    result = invoke(world, *args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["lines"], summary["generated"], summary["reused"]) == (4, 4, 0)
    assert summary["swaps"] <= summary["groups"] and summary["pass1_swaps"] == 0
    assert summary["seconds"] >= summary["pass1_seconds"] + summary["pass2_seconds"] - 1e-3
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["m1", "s1", "c1", "m2"]
    assert all({"expert", "alpha", "completion", "line", "key"} <= set(row) for row in rows)
    assert rows[0]["reference"] == "5" and rows[0]["score"] in (0.0, 1.0)
    assert "score" not in rows[2] and rows[1]["messages"] == PROMPTS[1]["messages"]
    assert not Path(f"{output}.partial").exists()

    again = json.loads(invoke(world, *args).stdout)
    assert (again["generated"], again["reused"]) == (0, 4)


def test_run_with_one_expert_or_none_and_outputs_on_stdout(world) -> None:
    result = invoke(world, "run", str(world["prompts"]), "--adapt", "arc-svf", "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["expert"] for row in rows] == ["arc-svf@1"] * 4
    base = invoke(world, "run", str(world["prompts"]), "--adapt", "none", "--max-new-tokens", "2")
    assert [json.loads(line)["expert"] for line in base.stdout.splitlines()] == [None] * 4


def test_bad_lines_are_skipped_with_their_numbers_or_stop_a_strict_run(world) -> None:
    prompts = world["tmp"] / "mixed.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi"}\n{oops\n{"id": "b"}\n{"id": "c", "prompt": "yo"}\n')
    output = world["tmp"] / "out.jsonl"
    strict = CliRunner().invoke(
        app, ["run", str(prompts), "--strict", "-o", str(output), "--model", "/nonexistent/model"]
    )  # exit 2, not 3: it stops before loading any model
    assert strict.exit_code == 2
    assert f"{prompts}:2: malformed JSON" in strict.stderr and "(and 1 more)" in strict.stderr
    assert not output.exists()

    result = invoke(world, "run", str(prompts), "--adapt", "none", "-o", str(output), "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    assert f"skipped {prompts}:2: malformed JSON" in result.stderr
    assert f"skipped {prompts}:3: has neither `prompt` nor `messages`" in result.stderr
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == ["a", "c"]


def test_few_shot_searches_once_then_reuses_the_saved_mix(world) -> None:
    shots = write_shots(world["tmp"] / "shots.jsonl")
    output = world["tmp"] / "out.jsonl"
    search = ("--task", "gsm8k", "--shots", str(shots), "--cem-score", "likelihood", "--cem-population", "2",
              "--cem-elites", "1", "--cem-iterations", "2")  # fmt: skip
    result = invoke(world, "run", str(world["prompts"]), "--adapt", "few-shot", *search, "-o", str(output),
                    "--max-new-tokens", "2", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["notes"] == ["searched α and saved gsm8k-fewshot@1"]
    assert summary["pass1_swaps"] == 4 and summary["experts"] == {"gsm8k-fewshot@1": 4}
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert set(rows[0]["alpha"]) == {"arc-svf@1", "gsm8k-svf@1"}
    manifest = Registry(world["registry"]).resolve("gsm8k-fewshot").manifest()
    assert manifest.provenance["kind"] == "searched" and len(manifest.provenance["curve"]) == 2

    again = invoke(world, "dispatch", str(world["prompts"]), "--strategy", "few-shot", *search, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["note"].startswith("reused gsm8k-fewshot@1")


def test_clear_errors_for_missing_pieces(world) -> None:
    no_classifier = invoke(world, "run", str(world["prompts"]), "--adapt", "classifier", "-o", "x.jsonl")
    assert no_classifier.exit_code == 3
    assert "train one with `t2 train --task cls --experts arc,gsm8k,mbpp`" in no_classifier.stderr
    no_output = invoke(world, "run", str(world["prompts"]), "--json")
    assert no_output.exit_code == 2 and "pass -o FILE" in no_output.stderr
    engine = invoke(world, "run", str(world["prompts"]), "--engine", "vllm-next", "-o", "x.jsonl")
    assert engine.exit_code == 2 and "unknown engine 'vllm-next'; use one of: auto, hf, vllm" in engine.stderr
    batching = CliRunner().invoke(app, ["run", str(world["prompts"]), "--pass2", "rowz", "--model", "/nowhere"])
    assert batching.exit_code == 2 and "--pass2 'rowz': pass one of groups, rows" in batching.stderr
    few_shot = CliRunner().invoke(
        app, ["run", str(world["prompts"]), "--adapt", "few-shot", "--task", "gsm8k", "--model", "/nowhere"]
    )
    assert few_shot.exit_code == 2 and "takes --task T and --shots FILE together" in few_shot.stderr  # before loading
    named = invoke(world, "dispatch", str(world["prompts"]), "--strategy", "arc-svf", "--json")
    assert named.exit_code == 0, named.output  # --strategy is the hidden old name of --adapt
    assert json.loads(named.stdout)["adapt"] == "arc-svf"


def test_classifier_run_applies_the_classifier_once_for_pass_1(world) -> None:
    loaded = load_model(world["model"])
    publish_expert(Registry(world["registry"]), loaded, "router", "cls", z=0.9, noise_seed=3)
    output = world["tmp"] / "out.jsonl"
    result = invoke(world, "run", str(world["prompts"]), "--adapt", "classifier", "-o", str(output),
                    "--max-new-tokens", "2", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # The engine holds the classifier after pass 1, so every group of pass 2 is a swap.
    assert summary["pass1_swaps"] == 1 and summary["swaps"] == summary["groups"] and summary["batching"] == "groups"
    rows = invoke(world, "run", str(world["prompts"]), "--adapt", "classifier", "-o", str(output),
                  "--max-new-tokens", "2", "--json", "--pass2", "rows", "--no-resume")  # fmt: skip
    assert rows.exit_code == 0, rows.output
    summary = json.loads(rows.stdout)
    # Every expert in one batch: the only swap puts the base back in after the classifier.
    assert (summary["batching"], summary["swaps"]) == ("rows", 1)


def test_run_reports_labelled_scores_and_compares_with_the_base(world) -> None:
    output = world["tmp"] / "out.jsonl"
    args = ("run", str(world["prompts"]), "--adapt", "gsm8k-svf", "-o", str(output), "--max-new-tokens", "3")
    summary = json.loads(invoke(world, *args, "--compare", "none", "--json").stdout)
    assert summary["scores"]["n"] == 1 and summary["scores"]["mean"] in (0.0, 1.0)  # only m1 has a reference
    assert summary["compare"]["adapted"] == summary["scores"] and summary["compare"]["base"]["n"] == 1
    difference = summary["compare"]["adapted"]["mean"] - summary["compare"]["base"]["mean"]
    assert summary["compare"]["difference"]["mean"] == pytest.approx(difference)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert {"base_completion", "base_score"} <= set(rows[0]) and "base_score" not in rows[2]
    table = invoke(world, *args, "--compare", "none")  # resumed: every row and its base answer reused
    assert table.exit_code == 0, table.output
    assert "score of 1 labelled lines" in table.stdout and "difference (paired)" in table.stdout
    plain = invoke(world, *args)
    assert "score of 1 labelled lines: mean" in plain.stdout and "difference" not in plain.stdout
    assert invoke(world, *args, "--compare", "prompt").exit_code == 2


def test_run_without_output_writes_jsonl_on_stdout_and_its_summary_on_stderr(world) -> None:
    args = ("run", str(world["prompts"]), "--adapt", "gsm8k-svf", "--max-new-tokens", "2")
    result = invoke(world, *args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # nothing but JSON lines
    assert [row["id"] for row in rows] == ["m1", "s1", "c1", "m2"]
    assert "gsm8k-svf@1" in result.stderr and "4 generated, 0 reused" in result.stderr
    assert "score of 1 labelled lines: mean" in result.stderr
    quiet = CliRunner().invoke(app, ["--quiet", *args, "--model", world["model"], "--registry", world["registry"]])
    assert quiet.exit_code == 0, quiet.output
    assert [json.loads(line)["id"] for line in quiet.stdout.splitlines()] == ["m1", "s1", "c1", "m2"]
    assert "generated" not in quiet.stderr and "labelled" not in quiet.stderr
