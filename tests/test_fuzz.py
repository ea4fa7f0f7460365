"""Fuzz the readers of untrusted files: JSONL prompts (plain and gzipped), run outputs and resume journals,
task data, recipes, task specs and expert manifests.

Seeded and bounded (a few hundred inputs per reader, well under a few seconds): each input is random
bytes, a random nested structure written as JSON or YAML, a valid file with bytes flipped, or a known
hostile shape (deep nesting, huge integers, YAML aliases). A reader may accept an input or refuse it
with a T2Error whose message is one line; any other exception is a bug. Gzipped inputs are also cut short
or have their compressed bytes flipped. The resume reader must accept every regular file: a line it cannot
use is skipped.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from t2cli.adapt.runio import Journal, read_inputs
from t2cli.errors import T2Error
from t2cli.experts.files import read_manifest
from t2cli.experts.manifest_fields import MANIFEST_FILE
from t2cli.experts.recipes import parse_recipe
from t2cli.tasks.sources import read_jsonl
from t2cli.tasks.spec import load_spec

CASES = 250

HOSTILE = [
    b"[" * 100_000,
    b'{"prompt": ' + b"9" * 5000 + b"}",
    b"a: &a [1, 2]\nb: *a\n",
    b"- " * 5000 + b"x",
    b"\xff\xfe\x00\x00",
    b"!!python/object/apply:os.system ['true']\n",
    b"a: !!binary AAAA\n",
    b"experts: [{name: a, alpha: .nan}]\n",
    b"timeout_s: .inf\n",
    b"? [a, b]\n: c\n",
    b"{1: 2, [3]: 4}",
    b'{"line": 1, "key": "k", "completion": "x"}\n' + b"{" * 50_000,
    b'{"line": ' + b"1" * 5000 + b', "key": "k", "completion": 1}\n',
    b'{"prompt": "\xed\xa0\x80"}\n',  # a UTF-8-encoded surrogate
    b"\n" * 10_000,
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.randint(-(10**30), 10**30)
    if kind == 1:
        return rng.choice([0.5, -1.0, 1e308, float("inf"), float("nan"), 0.0])
    if kind == 2:
        return "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return rng.choice(["name", "experts", "prompt", "messages", "alpha", "sha256", "targets", "gsm8k@2"])
    if kind == 5:
        return rng.choice(["", "a" * 200, "../x", "/dev/zero", "{q}", "(x"])
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["name", "version", "experts", "alpha", "prompt", "messages", "role", "content", "data", "scorer",
            "format_version", "targets", "sizes", "files", "provenance", "metrics", "timeout_s", "answer"]  # fmt: skip
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randrange(5))}


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 8)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _inputs(seed: int, valid: bytes) -> list[bytes]:
    rng = random.Random(seed)
    inputs = list(HOSTILE)
    for _ in range(CASES):
        kind = rng.randrange(4)
        if kind == 0:
            inputs.append(rng.randbytes(rng.randrange(64)))
        elif kind == 1:
            inputs.append(json.dumps(_value(rng)).encode())
        elif kind == 2:
            inputs.append(yaml.safe_dump(_value(rng), allow_unicode=True).encode())
        else:
            inputs.append(_flip(rng, valid))
    return inputs


def _check(reader: Callable[[Path], object], path: Path, inputs: list[bytes]) -> None:
    for data in inputs:
        path.write_bytes(data)
        try:
            reader(path)
        except T2Error as error:
            assert "\n" not in str(error) and str(error), (data[:80], str(error))
        except Exception as error:
            pytest.fail(f"{type(error).__name__} from {data[:80]!r}: {error}")


def test_fuzz_prompts_reader(tmp_path: Path) -> None:
    valid = b'{"prompt": "hi", "task": "gsm8k"}\n{"messages": [{"role": "user", "content": "x"}]}\n'
    rng = random.Random(1)
    lines = [b"\n".join(rng.sample(_inputs(1, valid), 5)) for _ in range(60)]
    _check(read_inputs, tmp_path / "p.jsonl", _inputs(1, valid) + lines)


def test_fuzz_recipe_reader(tmp_path: Path) -> None:
    valid = b"experts:\n  - name: gsm8k@2\n    alpha: [0.2, 1.0]\n  - name: arc\n    alpha: {mlp: 0.5, default: 1}\n"
    _check(parse_recipe, tmp_path / "r.yaml", _inputs(2, valid))


def test_fuzz_spec_reader(tmp_path: Path) -> None:
    valid = b"name: demo\ndescription: d\ndata: d.jsonl\nprompt: 'Q: {q}'\nanswer: a\nscorer: code\ntimeout_s: 3\n"
    _check(load_spec, tmp_path / "s.yaml", _inputs(3, valid))


def test_fuzz_manifest_reader(tmp_path: Path) -> None:
    bank = Path(__file__).resolve().parent.parent / "registry"
    valid = next(bank.glob(f"*/*/*/{MANIFEST_FILE}")).read_bytes()
    _check(lambda path: read_manifest(path.parent), tmp_path / MANIFEST_FILE, _inputs(4, valid))


def _gzipped(seed: int, inputs: list[bytes]) -> list[bytes]:
    """Each input gzipped, and gzip streams cut short or with compressed bytes flipped."""
    rng = random.Random(seed)
    out = []
    for data in inputs:
        packed = gzip.compress(data, mtime=0)
        out.append(packed)
        out.append(packed[: rng.randrange(len(packed))])
        out.append(_flip(rng, packed))
    return out


def test_fuzz_gzipped_prompts_reader(tmp_path: Path) -> None:
    valid = b'{"prompt": "hi", "task": "gsm8k"}\n{"messages": [{"role": "user", "content": "x"}]}\n'
    _check(read_inputs, tmp_path / "p.jsonl.gz", _gzipped(5, _inputs(5, valid)[:150]))


def test_fuzz_task_data_reader(tmp_path: Path) -> None:
    valid = b'{"question": "1 + 1?", "answer": "#### 2"}\n'
    _check(read_jsonl, tmp_path / "d.jsonl", _inputs(6, valid))
    _check(read_jsonl, tmp_path / "d.jsonl.gz", _gzipped(6, _inputs(6, valid)[:100]))


def test_fuzz_resume_reader_never_fails_on_a_regular_file(tmp_path: Path) -> None:
    valid = b'{"line": 1, "key": "k", "completion": "x", "expert": null}\n{"line": 2, "key": "j", "completion": ""}\n'
    output = tmp_path / "out.jsonl"
    journal = Journal(output)
    rng = random.Random(7)
    inputs = _inputs(7, valid)
    for data in inputs:
        output.write_bytes(data)
        journal.path.write_bytes(rng.choice(inputs))
        try:
            finished = journal.finished()
        except Exception as error:
            pytest.fail(f"{type(error).__name__} from {data[:80]!r}: {error}")
        assert all(isinstance(line, int) and isinstance(key, str) for line, key in finished)
