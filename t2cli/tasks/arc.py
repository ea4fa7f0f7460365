"""ARC (AI2 Reasoning Challenge, Easy and Challenge): multiple-choice science questions."""

from __future__ import annotations

import random
from pathlib import Path

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.base import Example, FileTask, Record
from t2cli.tasks.choice import LETTERS, extract_choice
from t2cli.tasks.hubdata import DefaultData, hub_records
from t2cli.tasks.sources import read_jsonl, resolve_data_file
from t2cli.tasks.splits import SPLITS, check_split

INSTRUCTION = "Answer with the letter of the correct choice."
TEXT_INSTRUCTION = "Reply with the correct choice, copied exactly."
_SPLIT_FILES = {"train": "Train", "validation": "Dev", "test": "Test"}
STYLES = ("letters", "cloze", "text")
# Without --data: ARC-Easy from the Hub at a fixed commit (ARC-Challenge: --data $HUB/ARC-Challenge).
HUB = "hf://datasets/allenai/ai2_arc@210d026faf9955653af8916fad021475a3f00453"
DEFAULT = DefaultData(f"{HUB}/ARC-Easy")


class ArcTask(FileTask):
    """Data: {"id", "question": {"stem", "choices": [{"text", "label"}]}, "answerKey"} JSONL, or the Hub's
    rows {"id", "question", "choices": {"text": [...], "label": [...]}, "answerKey"}; 2-5 choices
    labelled A-E or 1-5, always shown as A-E (the original labels are kept in meta["labels"]).
    Source: ARC-Easy from the Hub (allenai/ai2_arc at a fixed commit) by default; a whole Hub dataset
    (hf://datasets/allenai/ai2_arc/ARC-Challenge); one file (split is then ignored); or a folder with
    ARC-*-{Train,Dev,Test}.jsonl[.gz] (train/validation/test). shuffle_seed permutes each example's
    choices deterministically, so that a preference for one letter earns nothing in training.

    style "letters" (default) lists the choices and asks for a letter; style "cloze" asks the bare
    question as plain text ("Question: …\nAnswer:"), to be answered with a choice's text — the form in
    which small models' knowledge shows when each choice is scored by its likelihood. Style "text" lists
    the choices unlettered and asks for the right one's text: a generated answer then starts with the
    content itself, not with a letter that the model must map to it (SmolLM2-135M answers letters at
    chance but choice texts well above it)."""

    name = "arc"
    description = "multiple-choice grade-school science questions"

    def __init__(self, shuffle_seed: int | None = None, style: str = "letters") -> None:
        if style not in STYLES:
            raise BadInputError(f"unknown arc style {style!r}; use one of {', '.join(STYLES)}")
        self.shuffle_seed = shuffle_seed
        self.style = style
        self.uses_chat_template = style != "cloze"

    def records(self, source: str | Path | None, split: str, limit: int | None = None) -> list[Record]:
        check_split(split, SPLITS, self.name)
        found = hub_records(self.name, source, split, DEFAULT)
        if found is not None:
            records, self.origin = found
            return records
        self.origin = None
        path = resolve_data_file(source, task=self.name, hint="")
        return read_jsonl(_split_file(path, split) if path.is_dir() else path, limit)

    def to_example(self, record: Record) -> Example:
        stem, entries = _stem_and_choices(record.data)
        if not 2 <= len(entries) <= len(LETTERS):
            raise ValueError(f"expected 2 to {len(LETTERS)} choices, got {len(entries)}")
        example_id = str(record.data.get("id", f"{self.name}/{record.index}"))
        if self.shuffle_seed is not None:
            # A string seed is hashed with SHA-512, so the order is the same in every run and process.
            random.Random(f"{self.shuffle_seed}:{example_id}").shuffle(entries)
        labels = [label for _, label in entries]
        answer_key = str(record.data["answerKey"]).strip()
        if answer_key not in labels:
            raise ValueError(f"answerKey {answer_key!r} is not one of the labels {labels}")
        answer = labels.index(answer_key)
        prompt = _prompt(stem, [text for text, _ in entries], self.style)
        return Example(
            id=example_id,
            question=prompt,
            reference=LETTERS[answer],
            choices=tuple(text for text, _ in entries),
            answer_index=answer,
            meta={"labels": labels, "stem": stem},
        )

    def raw_request(self, example: Example) -> str:
        return example.meta["stem"]

    def score(self, example: Example, completion: str) -> float:
        picked = extract_choice(completion, len(example.choices), example.choices)
        return 1.0 if picked == example.answer_index else -1.0

    def reference_completion(self, example: Example) -> str:
        if self.style == "letters":
            return f"The answer is {example.reference}."
        return example.choices[example.answer_index]


def _stem_and_choices(data: dict) -> tuple[str, list[tuple[str, str]]]:
    """The question and its (text, label) choices, from an ARC JSONL record or a Hub (Parquet) row."""
    question = data["question"]
    if isinstance(question, dict):
        return str(question["stem"]), [(str(choice["text"]), str(choice["label"])) for choice in question["choices"]]
    choices = data["choices"]
    pairs = zip(choices["text"], choices["label"], strict=True)
    return str(question), [(str(text), str(label)) for text, label in pairs]


def _prompt(stem: str, choices: list[str], style: str) -> str:
    if style == "cloze":
        return f"Question: {stem}"
    if style == "text":
        listing = "\n".join(f"- {text}" for text in choices)
        return f"{stem}\n\nChoices:\n{listing}\n\n{TEXT_INSTRUCTION}"
    listing = "\n".join(f"{LETTERS[index]}. {text}" for index, text in enumerate(choices))
    return f"{stem}\n\n{listing}\n\n{INSTRUCTION}"


def _split_file(folder: Path, split: str) -> Path:
    suffix = _SPLIT_FILES[split]
    matches = sorted(
        path for path in folder.iterdir() if path.name.endswith((f"-{suffix}.jsonl", f"-{suffix}.jsonl.gz"))
    )
    if not matches:
        raise NotFoundError(f"no ARC-*-{suffix}.jsonl in {folder}; pass the file itself with --data PATH")
    if len(matches) > 1:
        names = ", ".join(path.name for path in matches)
        raise BadInputError(f"several {split} files in {folder} ({names}); pass one of them with --data PATH")
    return matches[0]
