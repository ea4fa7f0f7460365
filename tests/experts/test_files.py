"""Expert artifacts: manifest schema, save/load round trip, and every way a folder can be refused."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from t2cli.errors import BadInputError, IntegrityError
from t2cli.experts.files import Expert, load_expert, save_expert_files, z_stats
from t2cli.experts.manifest import DIGEST_FIELD, FORMAT_VERSION, Manifest, manifest_digest, new_manifest
from t2cli.experts.manifest_fields import MANIFEST_FILE, Z_FILE, check_name, target_infos
from t2cli.fsutil import file_sha256
from tests.helpers import TRAINED_ARC, cached_tiny_llama, make_expert, rewrite_z

TRAINED = TRAINED_ARC


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Expert, Path]:
    expert = make_expert()
    folder = tmp_path / "arc"
    save_expert_files(expert, folder)
    return expert, folder


def test_round_trip_keeps_manifest_and_z(saved: tuple[Expert, Path]) -> None:
    expert, folder = saved
    loaded = load_expert(folder, fingerprint=cached_tiny_llama().fingerprint)
    sizes = {Z_FILE: (folder / Z_FILE).stat().st_size}
    assert loaded.manifest == replace(expert.manifest, sha256=file_sha256(folder / Z_FILE), sizes=sizes)
    assert loaded.z.keys() == expert.z.keys()
    for name, vector in expert.z.items():
        assert loaded.z[name].dtype == torch.float32
        assert torch.equal(loaded.z[name], vector)
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_FILE, Z_FILE]


def test_manifest_yaml_round_trip_and_compact_targets() -> None:
    manifest = _unsaved(version=3, files={"adapter_config.json": "ef" * 32})
    text = manifest.to_yaml()
    assert Manifest.from_yaml(text) == manifest
    data = yaml.safe_load(text)
    assert data["targets"][0] == {"name": "model.layers.0.mlp.gate_proj.weight", "role": "gate", "layer": 0, "rank": 32}
    assert list(data)[:3] == ["format_version", "name", "version"]


def test_new_manifest_fills_time_version_and_targets() -> None:
    from t2cli import __version__

    manifest = make_expert(selection="q,down").manifest
    assert manifest.t2_version == __version__
    assert manifest.created.endswith("Z") and manifest.version == 0 and manifest.format_version == FORMAT_VERSION
    assert {info.role for info in manifest.targets.values()} == {"q", "down"}
    assert manifest.targets == target_infos(cached_tiny_llama().select("q,down"))
    assert manifest.main_metric == ("acc", 0.5)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(colour="red"), "unknown field 'colour'"),
        (lambda d: d.pop("base_fingerprint"), "missing field 'base_fingerprint'"),
        (lambda d: d.update(version=-1), "version must be an integer"),
        (lambda d: d.update(sha256="xyz"), "sha256 must be 64"),
        (lambda d: d.update(svf_rule="spectral"), "unknown SVF rule"),
        (lambda d: d.update(provenance={"kind": "dreamed"}), "provenance needs a kind"),
        (lambda d: d.update(provenance={"kind": "trained", "task": "arc"}), "lacks data_sha256"),
        (lambda d: d["targets"][0].update(rank=0), "rank >= 1"),
        (lambda d: d["targets"].append(dict(d["targets"][0])), "listed twice"),
        (lambda d: d.update(metrics={"acc": "high"}), "metric 'acc' must be a number"),
        (lambda d: d.update(files={"../escape": "ab" * 32}), "not a plain file name"),
        (lambda d: d.update(created="yesterday"), "ISO-8601"),
    ],
)
def test_manifest_refuses_bad_fields(edit, message: str) -> None:
    data = _unsaved().to_dict()
    edit(data)
    with pytest.raises(IntegrityError, match=message):
        Manifest.from_yaml(_signed(data), "m.yaml")


def _unsaved(**changes) -> Manifest:
    """A manifest with made-up checksums and sizes for every file it lists."""
    files = changes.get("files", {})
    sizes = {Z_FILE: 1000, **{name: 10 for name in files}}
    return replace(make_expert().manifest, sha256="cd" * 32, sizes=sizes, **changes)


def _signed(data: dict) -> str:
    """YAML of hand-edited manifest data with a matching manifest_sha256, so only the field checks can refuse it."""
    return yaml.safe_dump({**data, DIGEST_FIELD: manifest_digest(data, "test")}, sort_keys=False)


def test_manifest_from_newer_format_asks_for_upgrade() -> None:
    data = _unsaved().to_dict()
    data["format_version"] = FORMAT_VERSION + 1
    data["a_future_field"] = True
    with pytest.raises(BadInputError, match="newer than this t2 reads.*pip install -U t2cli"):
        Manifest.from_yaml(yaml.safe_dump(data))


def test_manifest_refuses_invalid_yaml() -> None:
    # t2's sentence, with the line PyYAML points at (which line a build blames is PyYAML's business).
    with pytest.raises(IntegrityError, match=r"^manifest is not valid YAML at line \d+; fix the syntax$"):
        Manifest.from_yaml("name: a\n  bad: [\n")


@pytest.mark.parametrize("name", ["Arc", "-arc", "a/b", "a@1", "", "a b", "x" * 101])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(BadInputError, match="invalid expert name"):
        check_name(name)


def test_valid_names_pass() -> None:
    for name in ("arc", "gsm8k-v2", "math_0.5", "9lives"):
        assert check_name(name) == name


def _drop_first(z: dict) -> dict:
    return dict(list(z.items())[1:])


def _add_key(z: dict) -> dict:
    return {**z, "lm_head.weight": torch.ones(4)}


def _shorten(z: dict) -> dict:
    first = next(iter(z))
    return {**z, first: z[first][:-1].clone()}


def _poison(value: float):
    def edit(z: dict) -> dict:
        first = next(iter(z))
        vector = z[first].clone()
        vector[3] = value
        return {**z, first: vector}

    return edit


def _as_half(z: dict) -> dict:
    first = next(iter(z))
    return {**z, first: z[first].half()}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop_first, "no z for target model.layers.0.mlp.gate_proj.weight"),
        (_add_key, "z has key lm_head.weight, which the manifest does not target"),
        (_shorten, r"has shape \(31,\), expected \(32,\)"),
        (_poison(math.nan), "contains NaN or inf"),
        (_poison(math.inf), "contains NaN or inf"),
        (_as_half, "is torch.float16, expected float32"),
    ],
)
def test_load_refuses_bad_z_content(saved: tuple[Expert, Path], edit, message: str) -> None:
    expert, folder = saved
    rewrite_z(folder, edit(dict(expert.z)))
    with pytest.raises(IntegrityError, match=message):
        load_expert(folder)


def test_load_refuses_checksum_mismatch(saved: tuple[Expert, Path]) -> None:
    _, folder = saved
    data = bytearray((folder / Z_FILE).read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last z value
    (folder / Z_FILE).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum mismatch on z.safetensors"):
        load_expert(folder)


def test_load_refuses_other_base_model(saved: tuple[Expert, Path]) -> None:
    _, folder = saved
    other = cached_tiny_llama(1).fingerprint
    assert other != cached_tiny_llama().fingerprint
    with pytest.raises(IntegrityError, match="was made for model tiny-llama.*`t2 transfer`"):
        load_expert(folder, fingerprint=other)


def test_load_refuses_missing_manifest_and_folder(saved: tuple[Expert, Path], tmp_path: Path) -> None:
    from t2cli.errors import NotFoundError

    _, folder = saved
    (folder / MANIFEST_FILE).unlink()
    with pytest.raises(IntegrityError, match="has no manifest.yaml"):
        load_expert(folder)
    with pytest.raises(NotFoundError, match="does not exist"):
        load_expert(tmp_path / "nowhere")


@pytest.fixture
def with_adapter(tmp_path: Path) -> Path:
    adapter = tmp_path / "adapter_config.json"
    adapter.write_text('{"r": 16}\n')
    folder = tmp_path / "lora"
    manifest = save_expert_files(make_expert(), folder, extra_files={"adapter_config.json": adapter})
    assert manifest.files == {"adapter_config.json": file_sha256(adapter)}
    return folder


def test_extra_files_are_checksummed(with_adapter: Path) -> None:
    assert load_expert(with_adapter).manifest.files.keys() == {"adapter_config.json"}
    (with_adapter / "adapter_config.json").write_text('{"r": 17}\n')
    with pytest.raises(IntegrityError, match="checksum mismatch on adapter_config.json"):
        load_expert(with_adapter)
    (with_adapter / "adapter_config.json").write_text('{"r": 8}\n')
    with pytest.raises(
        IntegrityError,
        match=r"checksum mismatch on adapter_config.json \(fewer bytes than the 10 its manifest records\)",
    ):
        load_expert(with_adapter)


def test_missing_and_unlisted_extra_files_are_refused(with_adapter: Path) -> None:
    (with_adapter / "adapter_config.json").unlink()
    with pytest.raises(IntegrityError, match="adapter_config.json is missing"):
        load_expert(with_adapter)
    (with_adapter / "adapter_config.json").write_text('{"r": 16}\n')
    load_expert(with_adapter)
    (with_adapter / "notes.txt").write_text("hi")
    with pytest.raises(IntegrityError, match="notes.txt is not listed in the manifest"):
        load_expert(with_adapter)


def test_save_refuses_bad_z_and_existing_expert(saved: tuple[Expert, Path], tmp_path: Path) -> None:
    expert, folder = saved
    with pytest.raises(BadInputError, match="already holds an expert"):
        save_expert_files(expert, folder)
    poisoned = Expert(expert.manifest, _poison(math.nan)(expert.z))
    with pytest.raises(IntegrityError, match="NaN or inf"):
        save_expert_files(poisoned, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(BadInputError, match="plain file name"):
        save_expert_files(expert, tmp_path / "x", extra_files={"manifest.yaml": folder / MANIFEST_FILE})


def test_new_manifest_validates_its_inputs() -> None:
    loaded = cached_tiny_llama()
    common = {"base_model": "tiny-llama", "base_fingerprint": loaded.fingerprint, "targets": loaded.targets}
    with pytest.raises(BadInputError, match="invalid expert name"):
        new_manifest(name="ARC", provenance=TRAINED, **common)
    with pytest.raises(BadInputError, match="composed provenance lacks recipe"):
        new_manifest(name="mix", provenance={"kind": "composed"}, **common)
    with pytest.raises(BadInputError, match="unknown SVF rule"):
        new_manifest(name="arc", provenance=TRAINED, svf_rule="frobenius", **common)
    with pytest.raises(BadInputError, match="not a sha256"):
        new_manifest(name="arc", provenance=TRAINED, **{**common, "base_fingerprint": "abc"})
    with pytest.raises(BadInputError, match="YAML cannot store"):
        new_manifest(name="arc", provenance={**TRAINED, "seed": torch.tensor(1)}, **common).to_yaml()


def test_check_compatible() -> None:
    arc, gsm = make_expert("arc"), make_expert("gsm8k", seed=1)
    arc.check_compatible(gsm)
    with pytest.raises(IntegrityError, match="fingerprint"):
        arc.check_compatible(make_expert("other", model_seed=1))
    with pytest.raises(
        BadInputError, match=r"adapt different matrices \(model.layers.0.mlp.down_proj.weight only in arc@0"
    ):
        arc.check_compatible(make_expert("attn", selection="attn"))


def test_z_stats_per_matrix_in_layer_then_role_order() -> None:
    expert = make_expert(selection="all")
    first = next(iter(expert.z))
    expert.z[first] = torch.linspace(0.5, 1.5, expert.z[first].numel())
    stats = z_stats(expert)
    assert [(s.layer, s.role) for s in stats[:8]] == [
        (0, "q"), (0, "k"), (0, "v"), (0, "o"), (0, "gate"), (0, "up"), (0, "down"), (1, "q"),
    ]  # fmt: skip
    top = stats[0]
    assert top.name == first
    assert (top.min, top.max) == (0.5, 1.5)
    assert top.mean == pytest.approx(1.0)
    assert top.std == pytest.approx(float(expert.z[first].double().std(correction=0)))


# ---- hostile manifests and folders ----------------------------------------------------------------


def _edit_manifest(folder: Path, **changes) -> None:
    """Change fields of a saved manifest by hand, keeping its old manifest_sha256 (what an attacker can do)."""
    data = yaml.safe_load((folder / MANIFEST_FILE).read_text())
    data.update(changes)
    (folder / MANIFEST_FILE).write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(
    "changes",
    [
        {"metrics": {"acc": 0.99}},
        {"description": "the best expert"},
        {"task": "gsm8k"},
        {"base_fingerprint": "ab" * 32},
        {"created": "2020-01-01T00:00:00Z"},
    ],
)
def test_any_edited_manifest_field_is_refused(saved: tuple[Expert, Path], changes: dict) -> None:
    _, folder = saved
    _edit_manifest(folder, **changes)
    with pytest.raises(IntegrityError, match="manifest_sha256 does not match its fields"):
        load_expert(folder)


def test_alias_bomb_and_oversized_manifests_are_refused_before_parsing(tmp_path: Path) -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
    with pytest.raises(IntegrityError, match="anchors or aliases"):
        Manifest.from_yaml(bomb, "m.yaml")
    with pytest.raises(IntegrityError, match="larger than 1,048,576 bytes"):
        Manifest.from_yaml("description: " + "x" * (1 << 20) + "\n", "m.yaml")
    # 200 levels: past t2's cap, below every YAML build's own (libyaml >= 6.0.4 stops flow nesting at 1000).
    with pytest.raises(IntegrityError, match="nested deeper than"):
        Manifest.from_yaml("a: " + "[" * 200 + "]" * 200 + "\n", "m.yaml")
    # Deeper still, the build decides who refuses first (t2 or the scanner): refused, in one line, either way.
    with pytest.raises(IntegrityError, match=r"^m\.yaml [^\n]+$"):
        Manifest.from_yaml("a: " + "[" * 1000 + "]" * 1000 + "\n", "m.yaml")


def test_non_utf8_manifest_is_an_integrity_error(saved: tuple[Expert, Path]) -> None:
    _, folder = saved
    (folder / MANIFEST_FILE).write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(IntegrityError, match="is not UTF-8 text"):
        load_expert(folder)


def test_stray_dot_files_links_and_special_files_are_refused(saved: tuple[Expert, Path], tmp_path: Path) -> None:
    import os

    _, folder = saved
    (folder / ".hidden").write_text("x")
    with pytest.raises(IntegrityError, match=r"\.hidden is not listed in the manifest"):
        load_expert(folder)
    (folder / ".hidden").unlink()
    real = tmp_path / "real.safetensors"
    (folder / Z_FILE).rename(real)
    (folder / Z_FILE).symlink_to(real)  # the very same bytes, but through a link
    with pytest.raises(IntegrityError, match="z.safetensors is a link"):
        load_expert(folder)
    (folder / Z_FILE).unlink()
    os.mkfifo(folder / Z_FILE)
    with pytest.raises(IntegrityError, match="z.safetensors is not a regular file"):
        load_expert(folder)


def test_z_larger_than_its_target_allows_is_refused(saved: tuple[Expert, Path]) -> None:
    _, folder = saved
    data = yaml.safe_load((folder / MANIFEST_FILE).read_text())
    data["sizes"] = {Z_FILE: 1 << 40}
    with pytest.raises(IntegrityError, match=r"sizes\['z.safetensors'\] must be a whole number of bytes from 1 to"):
        Manifest.from_yaml(_signed(data), "m.yaml")


def _as_format_1(folder: Path) -> None:
    data = yaml.safe_load((folder / MANIFEST_FILE).read_text())
    for key in ("sizes", DIGEST_FIELD):
        data.pop(key)
    data["format_version"] = 1
    (folder / MANIFEST_FILE).write_text(yaml.safe_dump(data, sort_keys=False))


def test_format_1_manifests_are_refused_until_re_signed(saved: tuple[Expert, Path]) -> None:
    from t2cli.experts.resign import main, resign

    _, folder = saved
    _as_format_1(folder)
    with pytest.raises(IntegrityError, match="format-1 manifest.*python -m t2cli.experts.resign FOLDER"):
        load_expert(folder)
    assert main([str(folder)]) == 0
    assert load_expert(folder).manifest.sizes == {Z_FILE: (folder / Z_FILE).stat().st_size}
    assert resign(folder) is False  # already signed


def test_re_signing_refuses_files_that_fail_their_old_checksums(saved: tuple[Expert, Path]) -> None:
    from t2cli.experts.resign import main

    _, folder = saved
    _as_format_1(folder)
    data = bytearray((folder / Z_FILE).read_bytes())
    data[-1] ^= 1
    (folder / Z_FILE).write_bytes(bytes(data))
    before = (folder / MANIFEST_FILE).read_bytes()
    assert main([str(folder)]) == IntegrityError.exit_code
    assert (folder / MANIFEST_FILE).read_bytes() == before


def test_the_bundled_bank_is_signed_in_the_current_format() -> None:
    bank = Path(__file__).resolve().parents[2] / "registry"
    folders = sorted(p.parent for p in bank.glob(f"*/*/*/{MANIFEST_FILE}"))
    assert folders
    for folder in folders:
        assert load_expert(folder).manifest.format_version == FORMAT_VERSION
