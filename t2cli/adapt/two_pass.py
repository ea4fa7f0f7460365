"""The two-pass batch run: dispatch every prompt (pass 1), then generate (pass 2).

    lines ──pass 1──▶ decisions ──groups─▶ hold expert (one swap per group) ──▶ generate, group by group
                              ├─rows───▶ every expert in one batch, each row its expert's exact W'(z) ──▶ generate
                              └─lora───▶ every expert in one batch, a LoRA per row ──▶ generate

Pass 2 is exact unless LoRA rows are asked for. `groups` (the default) holds the group the engine
already holds first (no swap for it), then the others in order of first appearance. `rows` (engines
with `row_experts`) decodes the whole batch at once with one copy of the adapted weights per expert;
on 2 CPU cores it measured slower than groups on both engines (docs/benchmarks.md), so it is opt-in. Mixed LoRA
pass 2 (`lora_rank`, engines with `mixed_batches`) answers with each SVF expert's rank-R LoRA export
(see `t2cli.experts.export`), and each row records its `path` (`exact` or `lora:R`). Lines are generated in chunks
whose finished lines go to the journal at once, so an interrupted run loses at most the chunk in flight
(see `t2cli.adapt.runio` for keys and resume).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from t2cli.adapt.routers import Decision, Router
from t2cli.adapt.runio import InputLine, Journal, example_for, line_key
from t2cli.engines.base import Generation, OnText, Prompt, Sampling
from t2cli.engines.context import check_prompt_tokens
from t2cli.errors import BadInputError
from t2cli.fsutil import canonical_json

if TYPE_CHECKING:
    from t2cli.engines.slot import ExpertSlot
    from t2cli.tasks.base import Example, Task


@dataclass
class RunSummary:
    """What a run did; `t2 run --json` prints it."""

    lines: int = 0
    generated: int = 0
    reused: int = 0
    experts: dict[str, int] = field(default_factory=dict)  # output lines per expert ("base": none)
    groups: int = 0
    swaps: int = 0  # pass 2: one per group, minus one when the engine already held the first
    pass2: str = "exact"  # or "lora:R": mixed-adapter batches of rank-R exports
    batching: str = "groups"  # pass 2's batches: `rows` (experts mixed per row), `groups` or `lora`
    pass1_swaps: int = 0  # the classifier, or the candidates of a few-shot search
    seconds: float = 0.0
    pass1_seconds: float = 0.0
    pass2_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("seconds", "pass1_seconds", "pass2_seconds"):
            data[key] = round(data[key], 3)
        return data


def pass2_path(slot: ExpertSlot, lora_rank: int | None) -> str:
    """`lora:R` when mixed batches were asked for and the engine can run them, else `exact` (swaps)."""
    if lora_rank is None or not slot.engine.mixed_batches:
        return "exact"
    if lora_rank < 1:
        raise BadInputError(f"LoRA rank must be >= 1, got {lora_rank}")
    return f"lora:{lora_rank}"


# How pass 2 may batch experts (`--pass2`); the first is the default.
BATCHINGS = ("groups", "rows")


def check_batching_name(batching: str) -> str:
    """Refuse an unknown `--pass2` (before any model loads)."""
    if batching not in BATCHINGS:
        raise BadInputError(f"--pass2 {batching!r}: pass one of {', '.join(BATCHINGS)}")
    return batching


def check_batching(batching: str, slot: ExpertSlot) -> str:
    """Refuse an unknown `--pass2`, or `rows` on an engine that cannot run them, before pass 1."""
    check_batching_name(batching)
    if batching == "rows" and not getattr(slot.engine, "row_experts", False):
        raise BadInputError(
            f"--pass2 rows: the {slot.engine.name} engine here cannot mix experts per row; pass --pass2 groups"
        )
    return batching


def pass2_batching(slot: ExpertSlot, experts: Collection[str | None], batching: str, lora_rank: int | None) -> str:
    """How pass 2 answers these experts: `lora`, `rows` or `groups` (see the module's docstring)."""
    if pass2_path(slot, lora_rank) != "exact":
        return "lora"
    named = [spec for spec in experts if spec is not None]
    if batching == "groups" or not named:
        return "groups"
    if any(slot.is_lora(spec) for spec in named):
        raise BadInputError("--pass2 rows: LoRA experts answer on an engine of their own; pass --pass2 groups")
    return "rows"


def run_identity(router: Router, slot: ExpertSlot, sampling: Sampling, path: str = "exact") -> dict[str, Any]:
    """Everything besides the input line that shapes an output line (hashed into its key)."""
    identity = {**router.identity, "engine": slot.engine.name, "model": slot.fingerprint, "sampling": asdict(sampling)}
    return identity if path == "exact" else identity | {"pass2": path}


def scored_fields(lines: Sequence[InputLine], texts: Sequence[str], tasks: dict[str, Task | None]) -> list[dict]:
    """`score` ((reward + 1) / 2, in [0, 1]) and `reference` for the lines whose task can score them."""
    fields: list[dict[str, Any]] = [{} for _ in lines]
    # Scored task by task: code tasks run a whole batch of programs in parallel.
    by_task: dict[str, tuple[Task, list[tuple[int, Example]]]] = {}
    for index, line in enumerate(lines):
        found = example_for(line, tasks)
        if found is not None:
            by_task.setdefault(found[0].name, (found[0], []))[1].append((index, found[1]))
    for task, items in by_task.values():
        rewards = task.score_many([example for _, example in items], [texts[i] for i, _ in items])
        for (index, example), reward in zip(items, rewards, strict=True):
            fields[index] = {"score": (reward + 1) / 2, "reference": example.reference}
    return fields


def output_row(
    line: InputLine, key: str, decision: Decision, completion: str, scored: dict, path: str = "exact"
) -> dict[str, Any]:
    return {
        **line.data,
        "expert": decision.expert,
        "alpha": decision.alpha,
        **({"shot": True} if decision.shot else {}),  # a few-shot search saw it: its score is not held out
        "completion": completion,
        **scored,
        "path": path,
        "line": line.number,
        "key": key,
    }


def _chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[start : start + size]) for start in range(0, len(indices), size)]


def generate_chunks(
    prompts: Sequence[Prompt],
    decisions: Mapping[int, Decision],
    slot: ExpertSlot,
    sampling: Sampling,
    *,
    chunk_size: int = 64,
    lora_rank: int | None = None,
    batching: str = BATCHINGS[0],
    on_text: OnText | None = None,
) -> Iterator[tuple[list[int], list[Generation], list[str]]]:
    """Pass 2 for the prompts in `decisions` (by index), batched as `pass2_batching` says: every expert
    mixed per row (`rows`, or `lora` with `lora_rank`), or one swap per expert group, the group the engine
    holds first. Yields each chunk as it finishes: its indices, their generations and the path each took
    (`exact`, `lora:R`).
    On engines that stream, `on_text(index, piece)` gets each prompt's new text as it is generated.
    `t2 run` and `t2 serve` both answer through it, so their greedy answers are the same."""
    groups: dict[str | None, list[int]] = {}
    for index, decision in decisions.items():
        groups.setdefault(decision.expert, []).append(index)

    def streaming(chunk: list[int]) -> dict[str, OnText]:
        if on_text is None or not slot.engine.streams:
            return {}
        return {"on_text": lambda row, piece: on_text(chunk[row], piece)}

    def by_length(indices: Sequence[int]) -> list[int]:
        # Similar lengths side by side, so each chunk's batches pad little.
        return sorted(indices, key=lambda i: len(canonical_json(prompts[i])))

    mode = pass2_batching(slot, groups, batching, lora_rank)
    if mode == "rows":
        slot.hold(None)  # rows without an expert take the live weights
        experts = {spec: slot.row_expert(spec) for spec in groups}
        # Each expert's rows side by side (by length within): an engine that batches in order (vLLM keeps
        # its running rows topped up first come, first served) then mixes experts only where one gives
        # way to the next, so a step reads few experts' weights, and no group waits for its own tail.
        rank = {spec: position for position, spec in enumerate(groups)}
        by_expert = sorted(by_length(list(decisions)), key=lambda i: rank[decisions[i].expert])
        for chunk in _chunks(by_expert, chunk_size):
            rows = [experts[decisions[i].expert] for i in chunk]
            generated = slot.engine.generate_rows([prompts[i] for i in chunk], rows, sampling, **streaming(chunk))
            yield chunk, generated, ["exact"] * len(chunk)
        return
    if mode == "lora":
        slot.hold(None)  # the adapters add to the base weights
        adapters = {spec: slot.adapter(spec, lora_rank) for spec in groups}  # type: ignore[arg-type]
        for chunk in _chunks(by_length(list(decisions)), chunk_size):
            chosen = [adapters[decisions[i].expert] for i in chunk]
            folders = [folder for folder, _ in chosen]
            generated = slot.engine.generate_mixed([prompts[i] for i in chunk], folders, sampling, **streaming(chunk))
            yield chunk, generated, [path for _, path in chosen]
        return
    # The group the engine already holds goes first (sorted is stable: the rest keep their order).
    for spec in sorted(groups, key=lambda spec: spec != slot.current):
        slot.hold(spec)
        for chunk in _chunks(by_length(groups[spec]), chunk_size):
            generated = slot.engine.generate([prompts[i] for i in chunk], sampling, **streaming(chunk))
            yield chunk, generated, ["exact"] * len(chunk)


def generate_groups(
    lines: Sequence[InputLine],
    keys: Sequence[str],
    decisions: dict[int, Decision],
    slot: ExpertSlot,
    sampling: Sampling,
    *,
    journal: Journal | None = None,
    chunk_size: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
    lora_rank: int | None = None,
    batching: str = BATCHINGS[0],
) -> tuple[dict[int, dict[str, Any]], int]:
    """Pass 2 for the lines in `decisions` (by index), through `generate_chunks`, each chunk journaled as it
    finishes. Returns the rows by index and the number of groups."""
    rows: dict[int, dict[str, Any]] = {}
    tasks: dict[str, Task | None] = {}
    chunks = generate_chunks(
        [line.prompt for line in lines],
        decisions,
        slot,
        sampling,
        chunk_size=chunk_size,
        lora_rank=lora_rank,
        batching=batching,
    )
    for chunk, generated, paths in chunks:
        texts = [g.text for g in generated]
        scored = scored_fields([lines[i] for i in chunk], texts, tasks)
        new = [
            output_row(lines[i], keys[i], decisions[i], text, extra, path)
            for i, text, extra, path in zip(chunk, texts, scored, paths, strict=True)
        ]
        if journal is not None:
            journal.append(new)
        rows.update(zip(chunk, new, strict=True))
        if on_progress is not None:
            on_progress(len(rows), len(decisions))
    return rows, len({decision.expert for decision in decisions.values()})


def run_batch(
    lines: Sequence[InputLine],
    make_router: Callable[[], Router],
    slot: ExpertSlot,
    sampling: Sampling,
    *,
    journal: Journal | None = None,
    resume: bool = True,
    chunk_size: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
    lora_rank: int | None = None,
    batching: str = BATCHINGS[0],
) -> tuple[list[dict[str, Any]], RunSummary]:
    """Both passes for the lines not already finished; returns every output row in input order.

    `make_router` builds pass 1 (it may search, e.g. few-shot CEM; timed as pass 1). With a journal,
    finished rows are journaled as each chunk ends and the output file is committed at the end.
    """
    if chunk_size < 1:
        raise BadInputError(f"chunk size must be >= 1, got {chunk_size}")
    check_batching(batching, slot)
    check_prompt_tokens([(f"line {line.number}", line.prompt) for line in lines], slot.loaded)
    started, swaps_before = time.perf_counter(), slot.swaps
    summary = RunSummary(lines=len(lines), pass2=pass2_path(slot, lora_rank))
    router = make_router()
    identity = run_identity(router, slot, sampling, summary.pass2)
    keys = [line_key(line, identity) for line in lines]
    if journal is not None and not resume:
        journal.discard()
    finished = journal.finished() if journal is not None and resume else {}
    pending = [i for i, line in enumerate(lines) if (line.number, keys[i]) not in finished]
    decisions = dict(zip(pending, router.decide([lines[i].prompt for i in pending]), strict=True))
    summary.pass1_seconds = time.perf_counter() - started
    summary.pass1_swaps = slot.swaps - swaps_before

    rows, summary.groups = generate_groups(
        lines,
        keys,
        decisions,
        slot,
        sampling,
        journal=journal,
        chunk_size=chunk_size,
        on_progress=on_progress,
        lora_rank=lora_rank,
        batching=batching,
    )
    summary.batching = pass2_batching(slot, {d.expert for d in decisions.values()}, batching, lora_rank)
    summary.pass2_seconds = time.perf_counter() - started - summary.pass1_seconds
    summary.swaps = slot.swaps - swaps_before - summary.pass1_swaps

    ordered = [rows[i] if i in rows else finished[(line.number, keys[i])] for i, line in enumerate(lines)]
    if journal is not None:
        journal.commit(ordered)
    summary.generated, summary.reused = len(pending), len(lines) - len(pending)
    for row in ordered:
        name = row.get("expert") or "base"
        summary.experts[name] = summary.experts.get(name, 0) + 1
    summary.seconds = time.perf_counter() - started
    return ordered, summary


def compare_base(
    lines: Sequence[InputLine],
    rows: Sequence[dict[str, Any]],
    slot: ExpertSlot,
    sampling: Sampling,
    *,
    chunk_size: int = 64,
) -> list[dict[str, Any]]:
    """`rows` (one per line, in order) where every scored row also has the base weights' answer:
    `base_completion` and `base_score`. A line pass 1 sent to the base already has it, and a row that
    has one (a resumed output) keeps it; the others are generated with the base weights."""
    missing = [i for i, row in enumerate(rows) if "score" in row and "base_score" not in row and row.get("expert")]
    extra: dict[int, dict[str, Any]] = {
        i: {"base_completion": row["completion"], "base_score": row["score"]}
        for i, row in enumerate(rows)
        if "score" in row and "base_score" not in row and not row.get("expert")
    }
    tasks: dict[str, Task | None] = {}
    if missing:
        slot.hold(None)
    for chunk in _chunks(missing, chunk_size):
        texts = [g.text for g in slot.engine.generate([lines[i].prompt for i in chunk], sampling)]
        for i, text, scored in zip(chunk, texts, scored_fields([lines[i] for i in chunk], texts, tasks), strict=True):
            extra[i] = {"base_completion": text, "base_score": scored["score"]}
    return [row | extra.get(i, {}) for i, row in enumerate(rows)]
