"""`t2 registry ...` through the real root app: tables, --json, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts.manifest_fields import Z_FILE
from t2cli.experts.registry import Registry
from tests.helpers import make_expert


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    registry.publish(make_expert("arc", seed=0, metrics={"accuracy": 0.61}))
    registry.publish(make_expert("arc", seed=1, metrics={"accuracy": 0.64}))
    registry.publish(make_expert("gsm8k", task="gsm8k", selection="attn"))
    return registry


def run(registry: Registry, *args: str) -> tuple[int, str, str]:
    # A wide terminal, so rich tables do not wrap the cells the tests look for.
    result = CliRunner().invoke(app, ["registry", *args, "--registry", str(registry.root)], env={"COLUMNS": "240"})
    return result.exit_code, result.stdout, result.stderr


def test_list_table_and_json(registry: Registry) -> None:
    code, out, _ = run(registry, "list")
    assert code == 0
    assert "arc" in out and "1, 2" in out and "accuracy 0.64" in out and "gsm8k" in out
    code, out, _ = run(registry, "list", "--json")
    payload = json.loads(out)
    assert payload["root"] == str(registry.root)
    arc = payload["experts"][0]
    assert (arc["name"], arc["versions"], arc["metric"], arc["metric_value"]) == ("arc", [1, 2], "accuracy", 0.64)
    code, out, _ = run(registry, "list", "--model", "other-model", "--json")
    assert json.loads(out)["experts"] == []


def test_show_manifest_and_z_statistics(registry: Registry) -> None:
    code, out, _ = run(registry, "show", "arc@1", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["ref"] == "arc@1" and payload["manifest"]["version"] == 1
    assert payload["manifest"]["metrics"] == {"accuracy": 0.61}
    stats = payload["z_stats"]
    assert [(s["layer"], s["role"]) for s in stats] == [
        (layer, role) for layer in (0, 1) for role in ("gate", "up", "down")
    ]
    assert all(s["min"] <= s["mean"] <= s["max"] for s in stats)
    code, out, _ = run(registry, "show", "gsm8k")
    assert code == 0
    assert "gsm8k@1 (tiny-llama)" in out and "z per matrix" in out and "provenance" in out


def test_verify_ok_then_exit_4_listing_each_problem(registry: Registry) -> None:
    code, out, _ = run(registry, "verify")
    assert code == 0 and "every version" in out
    path = registry.resolve("arc@1").path / Z_FILE
    path.write_bytes(path.read_bytes()[:-4])
    code, out, err = run(registry, "verify", "--json")
    assert code == 4
    problems = json.loads(out)["problems"]
    assert [p["where"] for p in problems] == ["tiny-llama/arc@1"]
    assert err.strip().count("\n") == 0 and err.startswith("error: 1 corrupt version(s)")
    code, out, _ = run(registry, "verify", "gsm8k")
    assert code == 0
    code, _, err = run(registry, "show", "arc@1")
    assert code == 4 and "checksum mismatch" in err


def test_rm_requires_a_version(registry: Registry) -> None:
    code, _, err = run(registry, "rm", "arc")
    assert code == 2 and "explicit version: arc@N" in err
    code, out, _ = run(registry, "rm", "arc@1")
    assert code == 0 and "removed arc@1 (tiny-llama)" in out
    assert registry.catalog()["tiny-llama"]["arc"] == [2]


def test_errors_are_one_line_with_exit_codes(registry: Registry) -> None:
    code, out, err = run(registry, "show", "matz")
    assert code == 3 and out == ""
    assert err == f"error: expert 'matz' not found in {registry.root}; known: arc, gsm8k\n"
    code, _, err = run(registry, "show", "Bad/Name")
    assert code == 2 and err.startswith("error: invalid expert name")
    code, _, err = run(registry, "push", "arc", "s3://bucket")
    assert code == 2 and "unknown remote" in err


def test_push_and_pull_through_a_file_remote(registry: Registry, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'remote'}"
    code, out, _ = run(registry, "push", "arc", url, "--json")
    assert code == 0
    assert json.loads(out) == {
        "action": "pushed",
        "name": "arc",
        "version": 2,
        "model_slug": "tiny-llama",
        "remote": url,
        "local": str(registry.resolve("arc@2").path),
    }
    code, out, _ = run(registry, "push", "arc@2", url)
    assert code == 0 and out.startswith("unchanged: arc@2 (tiny-llama) to")
    other = Registry(tmp_path / "other")
    code, out, _ = run(other, "pull", url, "arc")
    assert code == 0 and out.strip() == f"pulled arc@2 (tiny-llama) from {url}"
    assert other.verify() == [] and other.catalog() == {"tiny-llama": {"arc": [2]}}
    code, _, err = run(other, "pull", url, "arc@1")
    assert code == 3 and "arc@1 not found" in err


def test_gc_reports_removed_staging(registry: Registry) -> None:
    (registry.root / "tiny-llama" / "arc" / ".staging-dead").mkdir()
    code, out, _ = run(registry, "gc", "--json")
    assert code == 0 and json.loads(out)["removed"] == 1


def test_quiet_prints_no_tables_but_keeps_json_and_exit_codes(registry: Registry) -> None:
    def quiet(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, ["--quiet", "registry", *args, "--registry", str(registry.root)])
        return result.exit_code, result.stdout, result.stderr

    for args in (["list"], ["show", "arc"], ["verify"], ["gc"]):
        assert quiet(*args) == (0, "", "")
    code, out, _ = quiet("list", "--json")
    assert code == 0 and [e["name"] for e in json.loads(out)["experts"]] == ["arc", "gsm8k"]
    path = registry.resolve("arc@1").path / Z_FILE
    path.write_bytes(path.read_bytes()[:-4])
    code, out, err = quiet("verify")
    assert (code, out) == (4, "") and err.startswith("error: 1 corrupt version(s)")


def test_manifest_text_is_shown_literally_not_as_markup(registry: Registry) -> None:
    registry.publish(make_expert("odd", description="maps [bold]x[/bold] to [a-z] lists"))
    code, out, _ = run(registry, "show", "odd")
    assert code == 0 and "maps [bold]x[/bold] to [a-z] lists" in out


def _relabel(folder: Path, **changes: object) -> None:
    """Edit manifest fields and re-sign the manifest, so only the placement check can notice."""
    import yaml

    from t2cli.experts.manifest import manifest_digest

    data = yaml.safe_load((folder / "manifest.yaml").read_text())
    data.pop("manifest_sha256")
    data.update(changes)
    data["manifest_sha256"] = manifest_digest(data, "test")
    (folder / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def test_show_and_compose_refuse_what_verify_refuses(registry: Registry) -> None:
    _relabel(registry.resolve("arc@2").path, base_model="other-model")
    code, out, err = run(registry, "show", "arc@2")
    assert (code, out) == (4, "") and "holds arc@2 of other-model, not arc@2 of tiny-llama" in err
    result = CliRunner().invoke(
        app, ["compose", "arc@2=0.5", "arc@1=0.5", "-o", "mix", "--registry", str(registry.root)]
    )
    assert result.exit_code == 4 and "of other-model" in result.stderr
    assert not (registry.root / "other-model").exists()
    (registry.resolve("gsm8k").path / "manifest.yaml").write_bytes(b"\xff\xfe")
    code, out, _ = run(registry, "list", "--json")
    experts = {e["name"]: e for e in json.loads(out)["experts"]}
    assert code == 0 and "of other-model" in experts["arc"]["problem"] and "not UTF-8" in experts["gsm8k"]["problem"]


def test_an_edited_fingerprint_fails_verify_and_show(registry: Registry) -> None:
    import yaml

    path = registry.resolve("arc@1").path / "manifest.yaml"
    data = yaml.safe_load(path.read_text())
    data["base_fingerprint"] = "ab" * 32
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run(registry, "verify", "arc@1")[0] == 4
    code, _, err = run(registry, "show", "arc@1")
    assert code == 4 and "manifest_sha256 does not match" in err


def test_verify_of_a_missing_registry_exits_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["registry", "verify", "--registry", str(tmp_path / "none")])
    assert result.exit_code == 3 and result.stdout == ""
