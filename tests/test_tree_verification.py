"""Token trees: one target forward verifies a draft plus deterministic branches, exactly.

The branch machinery is checked at every layer: the trie, the toy and Hugging Face tree forwards
against plain forwards, the cache keeping exactly the accepted path, and the output distribution
by exact enumeration (sampled drafts with deterministic siblings, greedy and T > 0), with planted
bugs that the enumeration must catch.
"""

from __future__ import annotations

from typing import Sequence

import attrs
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from specdec import Decoder, Verifier
from specdec.draft import Branch, Draft, TokenTree
from specdec.errors import ConfigurationError
from specdec.integrations.base import supports_tree
from specdec.integrations.toy import ToyModel
from specdec.testing import seeded_toy
from specdec.proposer import ProposalRequest
from specdec.sequence_cache import SequenceCache
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer
from specdec.testing import MAX_NEW_BY_VOCAB, LosslessCase, assert_case_lossless, sampling_configs, toy_pairs
from tests.models import real_model


# ----------------------------------------------------------------------------------- the trie
def test_branches_merge_into_a_trie_after_the_draft_nodes():
    tree = Draft((1, 2, 3), branches=[Branch(3, [4, 5]), Branch(1, [2, 9]), Branch(0, [7]), Branch(3, [4, 6])]).tree
    assert tree.tokens == (1, 2, 3, 4, 5, 9, 7, 6)
    assert tree.parents == (-1, 0, 1, 2, 3, 1, -1, 3)
    assert tree.branch_nodes == ((3, 4), (1, 5), (6,), (3, 7))  # Branch(1, [2, 9]) shares the draft's "2"
    assert tree.children(-1) == {1: 0, 7: 6} and tree.children(3) == {5: 4, 6: 7}
    assert tree.depth() == 5
    assert Draft((1, 2)).tree == TokenTree((1, 2), (-1, 0))


def test_a_branch_must_hang_inside_the_draft():
    with pytest.raises(ValueError):
        Draft((1,), branches=[Branch(2, [3])])
    with pytest.raises(ValueError):
        Draft((1,), branches=[Branch(0, [])])


# ------------------------------------------------------------------------- tree forwards
def toy(order: int = 2, vocab: int = 4, seed: int = 0) -> ToyModel:
    """A random table model with unit-scale logits."""
    return seeded_toy(vocab, order, seed)


def test_toy_tree_rows_equal_plain_rows_of_each_path():
    model = toy()
    model.forward([1, 2])
    out = model.forward_tree([3, 0, 1, 2], [-1, 0, -1, 2], keep=4)
    for row, path in zip(out.logits, ([1, 2, 3], [1, 2, 3, 0], [1, 2, 1], [1, 2, 1, 2])):
        assert torch.equal(row, model.row(path))
    model.compact(2, [4, 5])  # keep the path 1 2 | 1 2
    assert model.ids == [1, 2, 1, 2]
    assert torch.equal(model.forward([3]).logits[0], model.row([1, 2, 1, 2, 3]))
    with pytest.raises(ValueError):
        model.compact(2, [3])  # not a path hanging after position 1


def test_sequence_cache_keeps_exactly_the_path_the_context_took():
    model = toy()
    cache = SequenceCache(model)
    cache.sync([1, 2, 3], tree=([0, 1, 2, 3], [-1, 0, -1, 2]), keep=5)
    # the round emitted 2 3 (the second branch) and a correction 0: the cache keeps 1 2 3 | 2 3
    cache.sync([1, 2, 3, 2, 3, 0], keep=1)
    assert model.ids == [1, 2, 3, 2, 3, 0] and cache.ids == model.ids
    # a context that left the tree at once drops it entirely
    cache.sync([1, 2, 3, 2, 3, 0], tree=([1], [-1]), keep=2)
    cache.sync([1, 2, 3, 2, 3, 0, 2, 2], keep=1)
    assert model.ids == [1, 2, 3, 2, 3, 0, 2, 2]


@pytest.mark.parametrize("attn", [None, "eager"])
def test_hf_tree_forward_matches_plain_forwards_and_compacts(attn):
    from specdec.integrations.loading import load_model
    from tests.models import model_path

    model = real_model("stories260K") if attn is None else load_model(model_path("stories260K"), attn_implementation=attn)
    assert supports_tree(model)
    prefix, a, b = [1, 403, 261, 263], [300, 301, 302], [310, 311]

    def plain(tokens):
        model.reset()
        return model.forward(tokens, keep=len(tokens)).logits

    ref_a, ref_b = plain(prefix + a), plain(prefix + b)
    model.reset()
    model.forward(prefix[:2])
    out = model.forward_tree(prefix[2:] + a + b, [-1, 0, 1, 2, 3, 1, 5], keep=7).logits
    assert torch.allclose(out[1:5], ref_a[3:7], atol=1e-4)
    assert torch.allclose(out[5:7], ref_b[4:6], atol=1e-4)
    model.compact(4, [7, 8])  # keep prefix + b
    after = model.forward([5]).logits[0]
    assert torch.allclose(after, plain(prefix + b + [5])[-1], atol=1e-4)


# ------------------------------------------------------------------ exact enumeration
@attrs.define
class BranchingProposer(DraftModelProposer):
    """A draft model (sampled q at T > 0) plus fixed deterministic branches: p/q and siblings."""

    specs: Sequence[tuple[int, tuple[int, ...]]] = ()

    def propose(self, request: ProposalRequest) -> Draft:
        draft = super().propose(request)
        if request.tree_depth == 0:
            return draft
        branches = []
        for at, tokens in self.specs:
            at = min(at, len(draft))
            tokens = tokens[: request.tree_depth - at]
            if tokens:
                branches.append(Branch(at, tokens))
        return attrs.evolve(draft, branches=branches)


@st.composite
def branching_cases(draw) -> LosslessCase:
    pair = draw(toy_pairs())
    prompt = tuple(draw(st.lists(st.integers(1, pair.vocab - 1), min_size=1, max_size=2)))
    max_new = draw(st.integers(2, MAX_NEW_BY_VOCAB[pair.vocab]))
    token = st.integers(0, pair.vocab - 1)
    specs = draw(st.lists(st.tuples(st.integers(0, 3), st.lists(token, min_size=1, max_size=3).map(tuple)), min_size=1, max_size=3))
    policy = FixedPolicy(draw(st.integers(1, 3)))
    return LosslessCase(pair, prompt, max_new, draw(sampling_configs(pair.vocab)), policy, lambda: BranchingProposer(pair.draft, specs))


def _branch_property(**overrides):
    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], **overrides)
    @given(data=st.data())
    def check(data, verifier: Verifier, target_override):
        case = data.draw(branching_cases())
        if target_override is not None:
            pair = attrs.evolve(case.pair, target=target_override(case.pair.target))
            specs = case.make_proposer().specs
            case = attrs.evolve(case, pair=pair, make_proposer=lambda: BranchingProposer(pair.draft, specs))
        assert_case_lossless(case, verifier)

    return check


def test_sampled_drafts_with_deterministic_branches_are_exactly_lossless():
    _branch_property()(verifier=Verifier(), target_override=None)


class FollowsAnyChild(Verifier):
    """Planted bug: after a miss, walks on into some branch anyway (emitting the miss)."""

    def verify(self, draft, target_logits, sampling, sampler, eos_token_ids=frozenset()):
        verdict = super().verify(draft, target_logits, sampling, sampler, eos_token_ids)
        tree = draft.tree
        node = verdict.tree_path[-1] if verdict.tree_path else -1
        if verdict.eos or not tree.children(node) or len(verdict.tokens) > len(verdict.tree_path) + 1:
            return verdict
        spare = [c for t, c in tree.children(node).items() if t != verdict.tokens[-1]]
        if not spare:
            return verdict
        return attrs.evolve(verdict, tokens=verdict.tokens[:-1] + (tree.tokens[spare[0]],))


class ToyKeepingTheWrongBranch(ToyModel):
    """Planted bug in a backend: `compact` keeps the first branch instead of the chosen one."""

    def compact(self, length, positions):
        first = []
        node = length - 1
        for _ in positions:
            node = next(i for i in range(length, len(self.ids)) if self._links[i] == node and i not in first)
            first.append(node)
        super().compact(length, first)


def _wrong_branch_toy(model: ToyModel) -> ToyModel:
    clone = ToyKeepingTheWrongBranch({}, model.vocab_size, order=model.order, eos_token_ids=model.eos_token_ids, name=model.name)
    clone._rows = model._rows
    return clone


# a fixed count, not the profile's: each planted-bug test relies on these derandomized examples
# meeting its bug, whichever profile is loaded
mutant_branch_property = _branch_property(max_examples=400, phases=[Phase.generate], derandomize=True, database=None)


@pytest.mark.exhaustive
def test_the_exact_test_catches_a_verifier_that_follows_the_wrong_branch():
    with pytest.raises(AssertionError):
        mutant_branch_property(verifier=FollowsAnyChild(), target_override=None)


@pytest.mark.exhaustive
def test_the_exact_test_catches_a_cache_that_keeps_the_wrong_branch():
    with pytest.raises(AssertionError):
        mutant_branch_property(verifier=Verifier(), target_override=_wrong_branch_toy)


# -------------------------------------------------------------------------- the decoder
def test_branches_are_refused_when_the_target_cannot_verify_trees():
    class PlainToy(ToyModel):
        compact = None  # type: ignore[assignment]  # no tree support advertised

    target = toy()
    plain = PlainToy({}, 4, order=2)
    plain._rows = target._rows
    decoder = Decoder(plain, proposer=BranchingProposer(toy(seed=1), [(0, (1,))]), policy=FixedPolicy(2))
    decoder.generate([1, 2], 4)  # told tree_depth == 0, the proposer sends no branches
    eager = Decoder(plain, proposer=_AlwaysBranches(toy(seed=1)), policy=FixedPolicy(2))
    with pytest.raises(ConfigurationError, match="cannot verify token trees"):
        eager.generate([1, 2], 4)


@attrs.define
class _AlwaysBranches(DraftModelProposer):
    def propose(self, request):
        return attrs.evolve(super().propose(request), branches=[Branch(0, (1,))])


def test_branch_statistics_are_reported():
    target = toy(seed=3)
    decoder = Decoder(target, proposer=BranchingProposer(toy(seed=4), [(0, (0, 1)), (9, (2, 3, 1))]), policy=FixedPolicy(2))
    stats = decoder.generate([1, 2], 12).stats
    assert stats.branch_offered > 0
    assert stats.generated == 12
    assert 0 <= stats.branch_accepted <= stats.branch_offered
