"""The registry: versions, resolution, listing, removal, verification, locking and crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from t2cli.errors import BadInputError, IntegrityError, NotFoundError
from t2cli.experts.files import load_expert, save_expert_files
from t2cli.experts.manifest_fields import MANIFEST_FILE, Z_FILE, parse_expert_spec
from t2cli.experts.registry import Registry, resolve_root
from t2cli.experts.versions import STAGING_PREFIX
from tests.helpers import make_expert, rewrite_z


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


def test_publish_assigns_increasing_versions(registry: Registry) -> None:
    first = registry.publish(make_expert(seed=0))
    second = registry.publish(make_expert(seed=1))
    assert (first.version, second.version) == (1, 2)
    assert second.path == registry.root / "tiny-llama" / "arc" / "2"
    assert sorted(p.name for p in second.path.iterdir()) == [MANIFEST_FILE, Z_FILE]
    loaded = second.load()
    assert loaded.manifest.version == 2
    name = "model.layers.1.mlp.up_proj.weight"
    assert torch.equal(loaded.z[name], make_expert(seed=1).z[name])
    assert registry.catalog() == {"tiny-llama": {"arc": [1, 2]}}


def test_publish_with_extra_files_in_the_same_step(registry: Registry, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter_model.safetensors"
    adapter.write_bytes(b"not really an adapter")
    ref = registry.publish(make_expert(), extra_files={"adapter_model.safetensors": adapter})
    assert (ref.path / "adapter_model.safetensors").read_bytes() == b"not really an adapter"
    assert ref.load().manifest.files.keys() == {"adapter_model.safetensors"}


def test_resolve_latest_and_fixed_versions(registry: Registry) -> None:
    for seed in range(3):
        registry.publish(make_expert(seed=seed))
    registry.publish(make_expert("gsm8k"))
    assert registry.resolve("arc").version == 3
    assert registry.resolve("arc@2").version == 2
    assert registry.resolve("arc@2", "tiny-llama").path == registry.root / "tiny-llama" / "arc" / "2"


def test_resolve_errors_list_what_exists(registry: Registry) -> None:
    registry.publish(make_expert("arc"))
    registry.publish(make_expert("gsm8k"))
    with pytest.raises(NotFoundError, match=r"expert 'matz' not found in .*registry; known: arc, gsm8k"):
        registry.resolve("matz")
    with pytest.raises(NotFoundError, match=r"arc@7 not found in .*tiny-llama; versions: 1"):
        registry.resolve("arc@7")
    with pytest.raises(NotFoundError, match=r"not found in .*/other-model; known: none"):
        registry.resolve("arc", "other-model")


def test_resolve_asks_for_model_when_name_is_ambiguous(registry: Registry) -> None:
    registry.publish(make_expert("arc"))
    other = make_expert("arc")
    other.manifest.base_model = "org/Other-Model"
    registry.publish(other)
    with pytest.raises(
        BadInputError, match=r"exists for several models \(org--other-model, tiny-llama\); pass --model"
    ):
        registry.resolve("arc")
    assert registry.resolve("arc", "org--other-model").model_slug == "org--other-model"


@pytest.mark.parametrize("spec", ["arc@", "arc@0", "arc@x", "arc@-1", "Arc", "a/b@1"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(BadInputError):
        parse_expert_spec(spec)


def test_list_describes_each_expert(registry: Registry) -> None:
    registry.publish(make_expert("arc", metrics={"accuracy": 0.61, "loss": 1.2}))
    registry.publish(make_expert("arc", metrics={"accuracy": 0.64}))
    registry.publish(make_expert("gsm8k", task="gsm8k", metrics={}))
    arc, gsm = registry.list()
    assert (arc.name, arc.versions, arc.base_model, arc.task) == ("arc", [1, 2], "tiny-llama", "arc")
    assert (arc.metric, arc.metric_value) == ("accuracy", 0.64)
    folder = registry.root / "tiny-llama" / "arc"
    assert arc.size_bytes == sum(p.stat().st_size for v in ("1", "2") for p in (folder / v).iterdir())
    assert (gsm.metric, gsm.task) == (None, "gsm8k")
    assert registry.list("no-such-model") == []


def test_remove_needs_a_version_and_never_reuses_it(registry: Registry) -> None:
    registry.publish(make_expert(seed=0))
    registry.publish(make_expert(seed=1))
    with pytest.raises(BadInputError, match="explicit version: arc@N"):
        registry.remove("arc")
    removed = registry.remove("arc@2")
    assert not removed.path.exists()
    assert registry.catalog() == {"tiny-llama": {"arc": [1]}}
    assert registry.publish(make_expert(seed=2)).version == 3
    with pytest.raises(NotFoundError, match="versions: 1, 3"):
        registry.remove("arc@2")
    assert not list((registry.root / "tiny-llama" / "arc").glob(f"{STAGING_PREFIX}*"))


def test_verify_names_each_corrupt_version(registry: Registry) -> None:
    registry.publish(make_expert(seed=0))
    second = registry.publish(make_expert(seed=1))
    registry.publish(make_expert("gsm8k"))
    assert registry.verify() == []
    data = bytearray((second.path / Z_FILE).read_bytes())
    data[-2] ^= 0xFF
    (second.path / Z_FILE).write_bytes(bytes(data))
    problems = registry.verify()
    assert [p.where for p in problems] == ["tiny-llama/arc@2"]
    assert "checksum mismatch on z.safetensors" in problems[0].message
    assert registry.verify("gsm8k") == []
    assert registry.verify("arc@1") == []
    assert len(registry.verify("arc")) == 1


def test_verify_catches_content_and_moved_versions(registry: Registry) -> None:
    ref = registry.publish(make_expert())
    expert = make_expert()
    rewrite_z(ref.path, {**expert.z, "model.layers.0.mlp.up_proj.weight": torch.ones(5)})
    (registry.root / "tiny-llama" / "arc").rename(registry.root / "tiny-llama" / "arc2")
    registry.publish(make_expert("gsm8k"))
    moved = registry.root / "tiny-llama" / "gsm8k" / "1"
    moved.rename(moved.parent / "4")
    messages = {p.where: p.message for p in registry.verify()}
    assert "expected (32,)" in messages["tiny-llama/arc2@1"]
    assert "holds gsm8k@1 of tiny-llama, not gsm8k@4" in messages["tiny-llama/gsm8k@4"]


def test_import_version_is_idempotent_and_never_overwrites(registry: Registry, tmp_path: Path) -> None:
    source = Registry(tmp_path / "elsewhere").publish(make_expert(seed=0))
    ref, installed = registry.import_version(source.path, "tiny-llama", "arc", 1)
    assert installed and ref.load().manifest.sha256 == source.load().manifest.sha256
    assert registry.import_version(source.path, "tiny-llama", "arc", 1) == (ref, False)
    different = Registry(tmp_path / "third").publish(make_expert(seed=5))
    with pytest.raises(IntegrityError, match="already exists .* with other content"):
        registry.import_version(different.path, "tiny-llama", "arc", 1)
    with pytest.raises(IntegrityError, match="holds arc@1 of tiny-llama, not arc@2"):
        registry.import_version(source.path, "tiny-llama", "arc", 2)
    assert ref.load().manifest.sha256 == source.load().manifest.sha256


def test_resolve_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("T2_REGISTRY", raising=False)
    monkeypatch.setenv("T2_HOME", str(tmp_path / "home"))
    assert resolve_root() == tmp_path / "home" / "registry"
    (tmp_path / "registry").mkdir()
    assert resolve_root() == tmp_path / "registry"
    monkeypatch.setenv("T2_REGISTRY", str(tmp_path / "env"))
    assert resolve_root() == tmp_path / "env"
    assert resolve_root(tmp_path / "explicit") == tmp_path / "explicit"


# ---- several processes ----------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from t2cli.experts.files import load_expert
from t2cli.experts.registry import Registry

root, source, ready, go, count = sys.argv[1:6]
expert = load_expert(source)
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.005)
registry = Registry(root)
for _ in range(int(count)):
    print(registry.publish(expert).version, flush=True)
"""

# Publishes, but stops for good once the staging folder is fully written: the parent then kills
# it with SIGKILL at that exact point, which no `finally` can clean up after.
STALLED_WRITER = """
import sys, time
from pathlib import Path
import t2cli.experts.registry as store
from t2cli.experts.files import load_expert

root, source, marker = sys.argv[1:4]
real_save = store.save_expert_files

def save_then_stall(expert, folder, **kwargs):
    manifest = real_save(expert, folder, **kwargs)
    Path(marker).write_text(str(folder))
    time.sleep(600)
    return manifest

store.save_expert_files = save_then_stall
store.Registry(root).publish(load_expert(source))
"""


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else "writer died"
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.01)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    save_expert_files(make_expert(), folder)
    return folder


def test_concurrent_writers_get_distinct_versions(registry: Registry, source: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    count = 4
    writers = []
    for i in range(2):
        ready = tmp_path / f"ready-{i}"
        command = [sys.executable, "-c", WRITER, str(registry.root), str(source), str(ready), str(go), str(count)]
        writers.append((subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), ready))
    try:
        for process, ready in writers:
            _wait_for(ready, process)
        go.touch()  # both are loaded and start publishing at once
        outputs = [process.communicate(timeout=120) for process, _ in writers]
    finally:
        for process, _ in writers:
            process.kill()
    assert [process.returncode for process, _ in writers] == [0, 0], [err for _, err in outputs]
    versions = [int(line) for out, _ in outputs for line in out.split()]
    assert sorted(versions) == list(range(1, 2 * count + 1))
    assert registry.catalog() == {"tiny-llama": {"arc": list(range(1, 2 * count + 1))}}
    assert registry.verify() == []


def test_killed_writer_leaves_no_version(registry: Registry, source: Path, tmp_path: Path) -> None:
    marker = tmp_path / "staged"
    command = [sys.executable, "-c", STALLED_WRITER, str(registry.root), str(source), str(marker)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(marker, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    staging = Path(marker.read_text())
    assert staging.name.startswith(STAGING_PREFIX) and (staging / MANIFEST_FILE).exists()
    assert registry.catalog() == {}
    assert registry.list() == []
    with pytest.raises(NotFoundError):
        registry.resolve("arc")
    # The kernel dropped the dead writer's lock, so the next publish proceeds, cleans up, and takes version 1.
    assert registry.publish(load_expert(source)).version == 1
    assert not staging.exists()


def test_gc_removes_stale_staging_but_not_live_ones(registry: Registry) -> None:
    from filelock import FileLock

    registry.publish(make_expert())
    registry.publish(make_expert("gsm8k"))
    stale = registry.root / "tiny-llama" / "arc" / f"{STAGING_PREFIX}dead"
    live = registry.root / "tiny-llama" / "gsm8k" / f"{STAGING_PREFIX}live"
    stale.mkdir()
    live.mkdir()
    assert registry.catalog() == {"tiny-llama": {"arc": [1], "gsm8k": [1]}}
    with FileLock(live.parent / ".lock"):  # a writer is busy with gsm8k right now
        assert registry.gc() == 1
    assert not stale.exists() and live.exists()


def test_verify_of_a_missing_registry_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        Registry(tmp_path / "no-such-dir").verify()


def _resign_edited(folder: Path, **changes) -> None:
    """Edit manifest fields and re-sign it, as a writer (not an attacker) could: only placement can catch it."""
    import yaml

    from t2cli.experts.files import read_manifest, write_manifest

    write_manifest(folder, read_manifest(folder))  # a valid manifest...
    data = yaml.safe_load((folder / MANIFEST_FILE).read_text())
    data.update(changes)
    data.pop("manifest_sha256")
    from t2cli.experts.manifest import Manifest

    write_manifest(folder, Manifest.from_yaml(_sign(data)))


def _sign(data: dict) -> str:
    import yaml

    from t2cli.experts.manifest import manifest_digest

    return yaml.safe_dump({**data, "manifest_sha256": manifest_digest(data, "test")}, sort_keys=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "gsm8k"}, "holds gsm8k@1 of tiny-llama, not arc@1"),
        ({"version": 7}, "holds arc@7 of tiny-llama, not arc@1"),
        ({"base_model": "other-model"}, "holds arc@1 of other-model, not arc@1 of tiny-llama"),
    ],
)
def test_every_load_path_checks_placement(registry: Registry, changes: dict, message: str) -> None:
    ref = registry.publish(make_expert())
    _resign_edited(ref.path, **changes)
    with pytest.raises(IntegrityError, match=message):
        ref.load()
    with pytest.raises(IntegrityError, match=message):
        registry.resolve("arc").manifest()
    assert message in registry.verify()[0].message
    (summary,) = registry.list()
    assert summary.problem is not None and message in summary.problem


def test_list_reports_broken_versions_and_goes_on(registry: Registry) -> None:
    broken = registry.publish(make_expert("arc"))
    registry.publish(make_expert("gsm8k"))
    (broken.path / MANIFEST_FILE).write_bytes(b"\xff\xfe not utf-8")
    arc, gsm = registry.list()
    assert arc.problem is not None and "not UTF-8" in arc.problem
    assert gsm.problem is None and gsm.base_model == "tiny-llama"
    (broken.path / MANIFEST_FILE).write_text("a: &a [1]\nb: *a\n")
    assert "anchors or aliases" in registry.list()[0].problem
    assert [p.where for p in registry.verify()] == ["tiny-llama/arc@1"]


def test_list_refuses_an_oversized_manifest_before_parsing_it(registry: Registry, monkeypatch) -> None:
    from t2cli.experts.manifest import Manifest

    ref = registry.publish(make_expert())
    with (ref.path / MANIFEST_FILE).open("a") as handle:
        handle.write("# " + "x" * (4 << 20) + "\n")

    def never(*args: object) -> None:
        raise AssertionError("an oversized manifest reached the YAML parser")

    monkeypatch.setattr(Manifest, "from_yaml", never)
    (summary,) = registry.list()
    assert "larger than 1,048,576 bytes" in summary.problem
