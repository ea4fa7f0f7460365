"""Pass 1: the bank, routing labels and prompts, the prompt and classifier strategies, routing reports.

Also the helpers the other dispatch/pipeline tests share: a tiny model with the char tokenizer, a
registry of its experts, planted label logits, and a fake engine that records what it is asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from t2cli.adapt.bank import OTHER, find_classifier, load_bank
from t2cli.adapt.prepare import StrategyOptions, make_router
from t2cli.adapt.report import routing_report
from t2cli.adapt.routers import (
    BASE,
    CUE,
    ClassifierRouter,
    Decision,
    FixedRouter,
    LabelRouter,
    check_route_tokens,
    routing_labels,
    routing_prompt,
    shown_request,
)
from t2cli.engines.hf import HFEngine
from t2cli.engines.slot import ExpertSlot
from t2cli.errors import BadInputError, NotFoundError
from t2cli.experts.files import Expert
from t2cli.experts.registry import Registry
from t2cli.models.loading import LoadedModel
from t2cli.tasks.classification import classification_plain_prompt
from t2cli.tasks.registry import get_task
from tests.helpers import FakeEngine, plant_label, publish_expert, tiny_model


@pytest.fixture
def loaded() -> LoadedModel:
    return tiny_model()


@pytest.fixture
def registry(tmp_path: Path, loaded: LoadedModel) -> Registry:
    store = Registry(tmp_path / "registry")
    publish_expert(store, loaded, "gsm8k-svf", "gsm8k", z=1.1)
    publish_expert(store, loaded, "arc-svf", "arc", z=1.2)
    publish_expert(store, loaded, "mix", "arc", kind="composed")
    publish_expert(store, loaded, "router", "cls", z=0.9)
    return store


def test_bank_holds_trained_experts_by_task_and_leaves_out_mixtures_and_the_classifier(registry, loaded) -> None:
    bank = load_bank(registry, loaded.slug)
    assert [(e.ref.spec, e.task) for e in bank.experts] == [("arc-svf@1", "arc"), ("gsm8k-svf@1", "gsm8k")]
    names = [name for name, _ in bank.categories]
    assert names == ["arc", "gsm8k", OTHER]
    # Built-in tasks are described as the cls task trains with; others by their manifest.
    assert bank.categories[1][1] == "grade-school math word problems with a numeric answer"
    assert bank.expert_for("gsm8k") == "gsm8k-svf@1" and bank.expert_for(OTHER) is None


def test_bank_refuses_two_experts_for_one_task_unless_picked(registry, loaded) -> None:
    publish_expert(registry, loaded, "arc-other", "arc")
    with pytest.raises(BadInputError, match=r"several experts serve task 'arc' \(arc-other@1, arc-svf@1\)"):
        load_bank(registry, loaded.slug)
    bank = load_bank(registry, loaded.slug, ["arc-other", "gsm8k-svf"])
    assert [e.ref.spec for e in bank.experts] == ["arc-other@1", "gsm8k-svf@1"]
    with pytest.raises(BadInputError, match="router@1 has no task to route to"):
        load_bank(registry, loaded.slug, ["router"])


def test_empty_bank_is_not_found(tmp_path, loaded) -> None:
    with pytest.raises(NotFoundError, match="no experts for model tiny-llama"):
        load_bank(Registry(tmp_path / "empty"), loaded.slug)


def test_labels_are_names_unless_their_first_tokens_collide(loaded) -> None:
    tokenizer = loaded.tokenizer
    assert routing_labels(tokenizer, ["arc", "gsm8k", OTHER], chat=False) == ["arc", "gsm8k", OTHER]
    # Char-level tokens: math and mbpp both start with "m".
    assert routing_labels(tokenizer, ["math", "mbpp", OTHER], chat=False) == ["A", "B", "C"]


def test_routing_prompt_lists_the_categories_and_ends_with_the_cue(loaded) -> None:
    categories = [("math", "math problems"), ("mbpp", "python functions"), (OTHER, "anything else")]
    text = routing_prompt(loaded.tokenizer, "what is 2 plus 2?", categories, ["A", "B", "C"], chat=False)
    assert "what is 2 plus 2?" in text
    assert "- A: math (math problems)\n- B: mbpp (python functions)\n- C: other (anything else)" in text
    # The char tokenizer spells a space on its own, so the cue carries it and the next token is the label.
    assert text.endswith(f"\n{CUE} ")


def _prompt_router(registry: Registry, loaded: LoadedModel) -> tuple[LabelRouter, ExpertSlot]:
    # Uncalibrated: a planted bias is the same for every request, so calibration would cancel it.
    slot = ExpertSlot(HFEngine(loaded), registry, loaded)
    return LabelRouter(slot, loaded, load_bank(registry, loaded.slug), calibrate=False), slot


# The base model answers with words: science (arc), math (gsm8k), other.
@pytest.mark.parametrize(("token", "label", "expert"), [("m", "gsm8k", "gsm8k-svf@1"), ("o", OTHER, None)])
def test_prompt_strategy_reads_the_planted_label_in_one_prefill(registry, loaded, token, label, expert) -> None:
    plant_label(loaded, token)
    router, slot = _prompt_router(registry, loaded)
    calls = []
    original = slot.engine.label_logprobs
    slot.engine.label_logprobs = lambda prompts, labels: calls.append(len(prompts)) or original(prompts, labels)
    decisions = router.decide(["what is 2 plus 2?", "hello there", [{"role": "user", "content": "hi"}]])
    assert calls == [3]
    assert {(d.label, d.expert, d.alpha) for d in decisions} == {(label, expert, None)}
    assert all(d.scores[label] > 0.99 and set(d.scores) == {"arc", "gsm8k", OTHER} for d in decisions)
    assert slot.swaps == 0  # the prompt strategy reads the base model as it is


def test_colliding_words_route_by_letter(tmp_path, loaded) -> None:
    store = Registry(tmp_path / "registry")
    publish_expert(store, loaded, "gsm8k-svf", "gsm8k")
    publish_expert(store, loaded, "math-svf", "math")  # both are "math" to the base model
    plant_label(loaded, "B")
    router, _ = _prompt_router(store, loaded)
    assert router.labels == ["A", "B", "C"]
    assert [d.label for d in router.decide(["integrate x squared"])] == ["math"]


def test_decisions_follow_each_prompts_scores_and_calibration_removes_the_label_prior(registry, loaded) -> None:
    routes = {"plus": 1, "zebra": 0, "hello": 2}
    prompts = ["what is 2 plus 2?", "a zebra question", "hello"]
    expected = [("gsm8k", "gsm8k-svf@1"), ("arc", "arc-svf@1"), (OTHER, None)]
    engine = FakeEngine(routes=routes, prior=[5.0, 0.0, 0.0])
    slot, bank = ExpertSlot(engine, registry, loaded), load_bank(registry, loaded.slug)
    router = LabelRouter(slot, loaded, bank)
    assert [(d.label, d.expert) for d in router.decide(prompts)] == expected
    [(sent, labels)] = engine.label_calls
    assert labels == ["science", "math", OTHER] and len(sent) == 4  # + the content-free request, same call
    assert "what is 2 plus 2?" in sent[0] and "\nN/A\n" in sent[3]

    biased = LabelRouter(
        ExpertSlot(engine, registry, loaded), loaded, load_bank(registry, loaded.slug), calibrate=False
    )
    assert {d.label for d in biased.decide(prompts)} == {"arc"}  # the prior wins everywhere


def test_classifier_strategy_scores_with_the_classifier_applied(registry, loaded) -> None:
    engine = FakeEngine(routes={"plus": 1})
    slot = ExpertSlot(engine, registry, loaded)
    router = make_router("classifier", slot, loaded, registry)
    assert router.identity["classifier"] == "router@1"
    assert [d.expert for d in router.decide(["what is 2 plus 2?"])] == ["gsm8k-svf@1"]
    assert engine.set_calls == ["z=0.90"] and slot.current == "router@1"
    [(asked, labels)] = engine.label_calls
    assert labels == ["arc", "gsm8k"]  # the categories cls experts learn, without `other`
    # Exactly the prompt the cls task asks (a plain one: the tiny model has no chat template, so it ends
    # in the task's answer cue), over the bank's tasks: a manifest without recorded categories predates `other`.
    members = [(task.name, task.description) for task in (get_task("arc"), get_task("gsm8k"))]
    trained = classification_plain_prompt("what is 2 plus 2?", members)
    assert not loaded.chat and asked[0] == trained and asked[0].endswith("\nAnswer:")


def test_a_classifier_is_asked_over_the_categories_its_manifest_records(registry, loaded) -> None:
    from dataclasses import replace

    ref = registry.resolve("router", loaded.slug)
    expert = ref.load(loaded.fingerprint)
    recorded = [["gsm8k", "sums"], ["arc", "science"], ["mbpp", "code"]]
    provenance = {**expert.manifest.provenance, "categories": recorded}
    registry.publish(Expert(replace(expert.manifest, name="router-ordered", provenance=provenance), expert.z))
    engine = FakeEngine(routes={"plus": 1})
    bank = load_bank(registry, loaded.slug)
    router = ClassifierRouter(ExpertSlot(engine, registry, loaded), loaded, bank, registry.resolve("router-ordered"))
    assert router.categories == ["gsm8k", "arc", "mbpp"]
    # Index 1 is now arc; mbpp, which the classifier knows but the bank lacks, would go to the base.
    assert [(d.label, d.expert) for d in router.decide(["what is 2 plus 2?"])] == [("arc", "arc-svf@1")]
    assert "- gsm8k: sums\n- arc: science\n- mbpp: code" in engine.label_calls[0][0][0]


def word_tokenizer() -> object:
    """One token per word or run of punctuation; decoding it joins tokens with single spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["what", "is", "2", "plus", "?", "hello"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate([*words, "<unk>"])}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def test_shown_request_keeps_the_first_tokens_of_the_text_itself(loaded) -> None:
    chars = loaded.tokenizer  # one token per character
    assert shown_request(chars, "what is 2 plus 2?", 6) == "what i"
    assert shown_request(chars, [{"role": "user", "content": "hello there"}], 4) == "hell"  # the user's words
    for whole in (None, 17, 100):
        assert shown_request(chars, "what is 2 plus 2?", whole) == "what is 2 plus 2?"
    words = word_tokenizer()
    # Cut after the 3rd token, spacing and all (a decode of the kept ids would read "what is 2").
    assert shown_request(words, "what  is\n2 plus 2?", 3) == "what  is\n2"
    assert shown_request(words, "what  is\n2 plus 2?", 5) == "what  is\n2 plus 2"


def test_route_tokens_is_a_count_or_zero_for_the_whole_request() -> None:
    assert [check_route_tokens(n) for n in (None, 0, 1, 64)] == [None, None, 1, 64]
    with pytest.raises(BadInputError, match=r"^--route-tokens -1: pass N >= 1 tokens, or 0 to read the whole"):
        check_route_tokens(-1)
    with pytest.raises(BadInputError, match="--route-tokens -2"):
        StrategyOptions(route_tokens=-2).check("prompt")  # the CLI's check, before any model loads


def test_both_strategies_read_only_the_first_route_tokens(registry, loaded) -> None:
    engine = FakeEngine(routes={"plus": 1, "what": 0})
    slot = ExpertSlot(engine, registry, loaded)
    label = make_router("prompt", slot, loaded, registry, StrategyOptions(route_tokens=7))
    # "plus" lies past the 7th token: the cut request routes by "what" alone.
    assert [d.label for d in label.decide(["what is 2 plus 2?"])] == ["arc"]
    sent = engine.label_calls[-1][0]
    assert "Request:\nwhat is\n" in sent[0] and "plus" not in sent[0] and "\nN/A\n" in sent[1]
    classifier = make_router("classifier", slot, loaded, registry, StrategyOptions(route_tokens=7))
    classifier.decide(["what is 2 plus 2?"])
    members = [(task.name, task.description) for task in (get_task("arc"), get_task("gsm8k"))]
    assert engine.label_calls[-1][0] == [classification_plain_prompt("what is", members)]
    assert label.identity["route_tokens"] == classifier.identity["route_tokens"] == 7  # run keys tell them apart
    whole = make_router("classifier", slot, loaded, registry, StrategyOptions(route_tokens=0))
    assert whole.identity["route_tokens"] is None
    assert [d.label for d in whole.decide(["what is 2 plus 2?"])] == ["gsm8k"]
    with pytest.raises(BadInputError, match="--route-tokens -1"):
        ClassifierRouter(slot, loaded, load_bank(registry, loaded.slug), registry.resolve("router"), route_tokens=-1)


def test_missing_classifier_says_how_to_train_one(tmp_path, loaded) -> None:
    store = Registry(tmp_path / "registry")
    publish_expert(store, loaded, "arc-svf", "arc")
    with pytest.raises(NotFoundError, match=r"train one with `t2 train --task cls --experts arc,gsm8k,mbpp`"):
        find_classifier(store, loaded.slug)


def test_make_router_for_none_an_expert_and_bad_names(registry, loaded) -> None:
    slot = ExpertSlot(FakeEngine(), registry, loaded)
    assert make_router("none", slot, loaded, registry).decide(["a", "b"]) == [BASE, BASE]
    fixed = make_router("arc-svf", slot, loaded, registry)
    assert isinstance(fixed, FixedRouter) and fixed.decision == Decision("arc-svf@1", None, "arc", {})
    with pytest.raises(NotFoundError, match="--adapt takes none, prompt, classifier, few-shot, probe or an expert"):
        make_router("promt", slot, loaded, registry)
    with pytest.raises(BadInputError, match="needs --task T and --shots FILE"):
        make_router("few-shot", slot, loaded, registry)


def test_routing_report_counts_confusion_and_accuracy() -> None:
    decisions = [
        Decision("g@1", None, "gsm8k", {}),
        Decision(None, None, OTHER, {}),
        Decision("a@1", None, "arc", {}),
        Decision("g@1", None, "gsm8k", {}),
    ]
    report = routing_report(decisions, ["gsm8k", "chat", "gsm8k", None], ["arc", "gsm8k", OTHER])
    assert report.experts == {"g@1": 2, "base": 1, "a@1": 1}
    assert report.confusion == {"gsm8k": {"gsm8k": 1, "arc": 1}, OTHER: {OTHER: 1}}
    assert report.labelled == 3 and report.accuracy == pytest.approx(2 / 3)


def test_slot_swaps_only_when_the_expert_changes(registry, loaded) -> None:
    engine = FakeEngine()
    slot = ExpertSlot(engine, registry, loaded)
    for spec in (None, "arc-svf@1", "arc-svf@1", None, None, "gsm8k-svf@1"):
        slot.hold(spec)
    assert engine.set_calls == ["z=1.20", "base", "z=1.10"] and slot.swaps == 3


@pytest.mark.real_model
def test_smollm2_routes_plain_requests_by_prompt(smollm2, tmp_path) -> None:
    """The prompt strategy on the real base model: clear math, code and chit-chat requests."""
    from t2cli.adapt.runio import read_inputs

    store = Registry(tmp_path / "registry")
    for task in ("gsm8k", "mbpp", "arc"):
        publish_expert(store, smollm2, f"{task}-svf", task)
    lines, _ = read_inputs(Path(__file__).parents[2] / "examples" / "prompts.jsonl")
    picked = [line for line in lines if line.data["id"] in ("math-2", "code-3", "chat-2")]
    router = make_router("prompt", ExpertSlot(HFEngine(smollm2), store, smollm2), smollm2, store)
    assert router.labels == ["science", "math", "code", OTHER]
    decisions = router.decide([line.prompt for line in picked])
    assert [(d.label, d.expert) for d in decisions] == [("gsm8k", "gsm8k-svf@1"), (OTHER, None), ("mbpp", "mbpp-svf@1")]
