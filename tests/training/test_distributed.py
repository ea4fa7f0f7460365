"""Training across processes (gloo on CPU): two processes take the same steps as one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from t2cli.errors import BadInputError
from t2cli.experts.registry import Registry
from t2cli.models.loading import wrap_model
from t2cli.training.config import TrainConfig
from t2cli.training.distributed import World, launched_world
from t2cli.training.trainer import Trainer
from tests.helpers import AlwaysC, build_tiny_model, make_model_folder, make_task, tiny_tokenizer

# Deterministic objectives only (exact choice gradient, reference NLL), so the runs can match.
# A batch of 5 splits 3 + 2: uneven slices must still give the one-process gradient.
CASES: dict[str, dict] = {
    "svf-choices": dict(steps=3, batch_size=5, lr=0.1, kl=0.1, val_every=2),
    "lora-nll": dict(method="lora-nll", rank=2, steps=2, batch_size=5, lr=0.05, kl=0.1, val_every=2, max_new_tokens=2),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_cases(world: World, folder: Path) -> None:
    """Run every case; each process writes its final parameters, the main one its step log."""
    model = build_tiny_model("llama", seed=5, initializer_range=0.3)
    model.generation_config.eos_token_id = 62
    loaded = wrap_model(model, tiny_tokenizer(), spec="tiny", model_id="tiny")
    task = AlwaysC()
    for name, options in CASES.items():
        config = TrainConfig(task=task.name, **options)
        run_dir = folder / name
        validation = task.load(split="validation")
        trainer = Trainer(loaded, task, task.load(), validation, config, run_dir=run_dir, world=world)
        result = trainer.run()
        save_file(trainer.policy.snapshot(), str(folder / f"{name}-rank{world.rank}.safetensors"))
        if world.main:
            steps = [[r.reward, r.kl, r.tokens, r.val_score] for r in result.steps]
            (folder / f"{name}.json").write_text(json.dumps({"steps": steps, "base_val": result.base_val}))


def worker(rank: int, size: int, port: int, folder: Path) -> None:
    torch.set_num_threads(1)
    os.environ |= {"RANK": str(rank), "WORLD_SIZE": str(size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    with launched_world() as world:
        assert (world.rank, world.size) == (rank, size)
        train_cases(world, folder)


def test_two_processes_take_the_same_steps_as_one(tmp_path, t2_home) -> None:
    mp.spawn(worker, args=(2, free_port(), tmp_path), nprocs=2, join=True)
    (tmp_path / "one").mkdir()
    train_cases(World(), tmp_path / "one")
    for name in CASES:
        one = load_file(str(tmp_path / "one" / f"{name}-rank0.safetensors"))
        ranks = [load_file(str(tmp_path / f"{name}-rank{r}.safetensors")) for r in range(2)]
        for key, tensor in one.items():
            assert torch.equal(ranks[0][key], ranks[1][key]), f"{name}: processes diverged on {key}"
            assert torch.allclose(ranks[0][key], tensor, atol=1e-5), f"{name}: {key} differs from one process"
        single = json.loads((tmp_path / "one" / f"{name}.json").read_text())
        split = json.loads((tmp_path / f"{name}.json").read_text())
        assert split["base_val"] == single["base_val"]
        assert single["steps"][-1][1] > 0  # the policy moved off the base
        for a, b in zip(split["steps"], single["steps"], strict=True):
            assert a[0] == pytest.approx(b[0], abs=1e-5) and a[1] == pytest.approx(b[1], abs=1e-5)
            assert a[2:] == b[2:]  # tokens and validation scores


def test_slices_cover_the_batch_and_one_process_is_the_identity() -> None:
    for count in (0, 1, 5, 8):
        slices = [World(rank, 3).shard(count) for rank in range(3)]
        assert [i for s in slices for i in s] == list(range(count))
        assert max(map(len, slices)) - min(map(len, slices)) <= 1
    world = World()
    assert world.main and world.shard(4) == range(4) and world.sum(1, 2.5) == (1.0, 2.5)
    local = torch.tensor([1.0, 2.0])
    assert world.assemble(local, 0, 2) is local
    parameter = torch.zeros(2, requires_grad=True)
    world.sum_gradients([parameter])
    assert parameter.grad is None


JOIN_WITHOUT_RENDEZVOUS = """
from t2cli.errors import BadInputError
from t2cli.training.distributed import launched_world
try:
    with launched_world():
        pass
except BadInputError as error:
    print(error)
"""


def test_a_launch_without_a_rendezvous_is_refused(monkeypatch) -> None:
    # In a fresh interpreter: an in-process vLLM engine (tests/engines) leaves a group joined in this one.
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")} | {
        "WORLD_SIZE": "2",
        "RANK": "0",
    }
    joined = subprocess.run([sys.executable, "-c", JOIN_WITHOUT_RENDEZVOUS], env=env, capture_output=True, text=True)
    assert "MASTER_ADDR" in joined.stdout and "start t2 with accelerate launch" in joined.stdout, joined.stderr
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(BadInputError, match="not a number"), launched_world():
        pass
    monkeypatch.setenv("WORLD_SIZE", "1")
    with launched_world() as world:
        assert world == World()


def leave_worker(rank: int, size: int, port: int, folder: Path) -> None:
    os.environ |= {"RANK": str(rank), "WORLD_SIZE": str(size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    with launched_world() as world:
        world.sum(1.0)  # training ends with a collective (the last validation) ...
        if world.main:
            time.sleep(1.0)  # ... after which the main process alone writes its files
            (folder / "written").touch()
    (folder / f"rank{rank}-saw-written").write_text(str((folder / "written").exists()))


def test_processes_leave_the_group_together(tmp_path) -> None:
    mp.spawn(leave_worker, args=(2, free_port(), tmp_path), nprocs=2, join=True)
    saw = [(tmp_path / f"rank{r}-saw-written").read_text() for r in range(2)]
    assert saw == ["True", "True"], "a process left the group while the main one was still writing"


def test_accelerate_launch_trains_once_and_publishes_once(tmp_path, t2_home) -> None:
    # --engine hf: the launcher is under test, not the engine (and hf starts in a fraction of vLLM's time).
    folder = make_model_folder(tmp_path / "tiny")
    spec = make_task(tmp_path)
    registry = tmp_path / "registry"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port()), "-m", "t2cli"]  # fmt: skip
    train = ["train", "--task", str(spec), "--model", str(folder), "--steps", "2", "--batch-size", "3",
             "--samples", "2", "--max-new-tokens", "2", "--val-limit", "3", "--registry", str(registry),
             "-o", "first", "--json", "--engine", "hf"]  # fmt: skip
    env = os.environ | {"T2_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, *train], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # one JSON document: only the main process prints
    assert summary["expert"] == "first@1" and summary["processes"] == 2
    assert Registry(registry).catalog() == {"tiny": {"first": [1]}} and Registry(registry).verify() == []
    log = (t2_home / "runs" / "tiny" / "first" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2]
