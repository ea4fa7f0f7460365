"""The pre-flight alignment check and the aligned mapping, on tiny models whose singular bases are known."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from t2cli.errors import BadInputError, IntegrityError
from t2cli.experts.alignment import Overlap, carry_aligned, held_energy, overlap, report, require_alignment
from t2cli.experts.files import Expert
from t2cli.experts.rebase import align_bank, publish_all, transfer_bank
from t2cli.experts.registry import Registry
from t2cli.models.loading import LoadedModel, wrap_model
from t2cli.svd import factorize
from tests.helpers import build_tiny_model, random_expert, tiny_loaded


def make_expert(loaded: LoadedModel, seed: int = 0, selection: str = "all", name: str = "arc") -> Expert:
    return random_expert(loaded, name, seed, selection, scale=0.3, task="arc")


def permutation(rank: int, seed: int) -> torch.Tensor:
    return torch.randperm(rank, generator=torch.Generator().manual_seed(seed))


def permuted_target(source: LoadedModel) -> tuple[LoadedModel, dict[str, torch.Tensor]]:
    """A model whose every target is W' = Σ_j s_j u_π(j) v_π(j)ᵀ: the source's singular vectors, reordered.

    Its SVD lists the source's directions with π applied (the singular values stay sorted), so
    direction j of the target is the source's direction π(j).
    """
    model = copy.deepcopy(source.model)
    perms = {}
    for t in source.targets:
        factors = factorize(source.model.get_parameter(t.name))
        perm = permutation(t.rank, seed=t.layer * 10 + len(t.role))
        weight = factors.U[:, perm].double() @ torch.diag(factors.S.double()) @ factors.Vh[perm].double()
        model.get_parameter(t.name).copy_(weight.float())
        perms[t.name] = perm
    return wrap_model(model, None, spec="tiny-permuted", model_id="tiny-permuted"), perms


@pytest.fixture(scope="module")
def source() -> LoadedModel:
    return tiny_loaded("llama")


@pytest.mark.parametrize("mapping", ["position", "aligned"])
def test_transfer_onto_itself_is_a_bit_for_bit_copy(source: LoadedModel, mapping: str, t2_home: Path) -> None:
    expert = make_expert(source)
    aligned = align_bank({"arc": expert}, source, source, carry=mapping == "aligned")
    found = aligned.reports["arc"]
    assert (found.verdict, found.energy, found.identical) == ("aligned", 1.0, True)
    assert all(role.cosine == 1.0 and role.energy == 1.0 for role in found.roles)
    moved = transfer_bank({"arc": expert}, source, aligned, mapping=mapping)["arc"].expert
    assert moved.z.keys() == expert.z.keys()
    assert all(torch.equal(moved.z[name], expert.z[name]) for name in expert.z)
    provenance = moved.manifest.provenance
    assert provenance["mapping"]["kind"] == mapping
    assert provenance["alignment"]["verdict"] == "aligned" and provenance["alignment"]["forced"] is False


def test_aligned_mapping_follows_permuted_singular_vectors_where_position_does_not(
    source: LoadedModel, t2_home: Path
) -> None:
    target, perms = permuted_target(source)
    expert = make_expert(source, seed=1)
    aligned = align_bank({"arc": expert}, source, target, carry=True)
    found = aligned.reports["arc"]
    # The same directions, reordered: the target's basis holds the whole change.
    assert found.verdict == "aligned" and found.energy == pytest.approx(1.0, abs=1e-4)
    by_aligned = transfer_bank({"arc": expert}, target, aligned, mapping="aligned")["arc"].expert.z
    by_position = transfer_bank({"arc": expert}, target, aligned, mapping="position")["arc"].expert.z
    for name, z in expert.z.items():
        wanted = z[perms[name]]
        assert torch.allclose(by_aligned[name], wanted, atol=1e-4)
        assert torch.equal(by_position[name], z)
        assert not torch.allclose(by_position[name], wanted, atol=1e-2)


def test_other_weights_of_the_same_shapes_are_not_rated_aligned(source: LoadedModel, t2_home: Path) -> None:
    other = tiny_loaded("llama", seed=7)
    expert = make_expert(source)
    found = align_bank({"arc": expert}, source, other).reports["arc"]
    assert found.same_shapes and found.energy is not None and found.energy < 0.2
    assert found.verdict != "aligned"
    assert all(role.cosine < 0.9 for role in found.roles)


def test_different_shapes_are_unrelated_and_refused_unless_forced(source: LoadedModel, t2_home: Path) -> None:
    bigger = tiny_loaded("qwen2", hidden_size=48, intermediate_size=72, num_hidden_layers=3)
    expert = make_expert(source)
    aligned = align_bank({"arc": expert}, source, bigger)
    found = aligned.reports["arc"]
    assert (found.verdict, found.energy, found.same_shapes) == ("unrelated", None, False)
    assert all(0 < role.cosine < 1 for role in found.roles)  # measured on the shared coordinates
    with pytest.raises(IntegrityError, match="unrelated .*shapes differ.*--force"):
        transfer_bank({"arc": expert}, bigger, aligned)
    forced = transfer_bank({"arc": expert}, bigger, aligned, force=True)["arc"].expert
    assert forced.manifest.provenance["alignment"]["forced"] is True
    with pytest.raises(BadInputError, match="source.s shapes"):
        align_bank({"arc": expert}, source, bigger, carry=True)


def test_carry_is_sign_blind_and_stays_within_the_source_range() -> None:
    generator = torch.Generator().manual_seed(0)
    left, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator, dtype=torch.float64))
    z = 1 + 0.5 * torch.randn(8, generator=generator, dtype=torch.float64)
    mixed = carry_aligned(Overlap("q", 0.5, left * right), z)
    assert bool((mixed >= z.min() - 1e-12).all() and (mixed <= z.max() + 1e-12).all())
    flips = torch.tensor([1.0, -1.0] * 4, dtype=torch.float64)
    assert torch.allclose(carry_aligned(Overlap("q", 0.5, (left * right) * flips), z), mixed)


def test_overlap_of_a_matrix_with_itself_holds_all_energy() -> None:
    weight = torch.randn(12, 20, generator=torch.Generator().manual_seed(3))
    factors = factorize(weight)
    pair = overlap("up", factors, factors, k=4)
    assert pair.cosine == pytest.approx(1.0, abs=1e-6)
    held, total = held_energy(pair, factors.S.double() * 0.1)
    assert held == pytest.approx(total, rel=1e-6)


def test_report_pools_energy_per_role_and_skips_unchanged_roles() -> None:
    pairs = {"a": Overlap("q", 0.9, None), "b": Overlap("q", 0.7, None), "c": Overlap("down", 1.0, None)}
    found = report(pairs, {"a": (3.0, 4.0), "b": (1.0, 4.0), "c": (0.0, 0.0)})
    roles = {r.role: r for r in found.roles}
    assert roles["q"].energy == 0.5 and roles["q"].cosine == pytest.approx(0.8) and roles["q"].verdict == "aligned"
    assert roles["down"].energy is None and roles["down"].verdict == "no change"
    assert found.energy == 0.5 and found.verdict == "aligned"
    weak = report({"a": Overlap("q", 0.2, None)}, {"a": (0.01, 1.0)})
    assert weak.verdict == "unrelated"
    with pytest.raises(IntegrityError, match=r"holds 1\.0% of its change"):
        require_alignment(weak, "arc@1", force=False)
    require_alignment(weak, "arc@1", force=True)
    assert report({"a": Overlap("q", 0.6, None)}, {"a": (0.2, 1.0)}).verdict == "partial"


def test_bank_publishes_all_or_none(
    source: LoadedModel, tmp_path: Path, t2_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Registry(tmp_path / "registry")
    target = wrap_model(build_tiny_model("llama", seed=0), None, spec="copy", model_id="tiny-copy")
    experts = {f"{n}@1": make_expert(source, seed=i, name=n) for i, n in enumerate(("arc", "math", "cls"))}
    aligned = align_bank(experts, source, target)
    rebased = transfer_bank(experts, target, aligned)
    real_publish, calls = Registry.publish, []

    def failing_third(self: Registry, expert: Expert, **kwargs: object) -> object:
        calls.append(expert.manifest.name)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_publish(self, expert, **kwargs)

    monkeypatch.setattr(Registry, "publish", failing_third)
    with pytest.raises(OSError, match="disk full"):
        publish_all(store, rebased)
    assert store.catalog() == {}
    monkeypatch.setattr(Registry, "publish", real_publish)
    refs = publish_all(store, rebased)
    assert sorted(ref.spec for ref in refs.values()) == ["arc@2", "cls@1", "math@2"]  # removed numbers stay retired
