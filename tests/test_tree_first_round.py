"""The first round of a fresh generation feeds the prompt and the draft's token tree in one forward
on an empty cache; every tree node must see the prompt and its own ancestors, never a sibling.

The toy models have no attention, so only a model that attends exercises the mask: the tiny real
llama `stories260K` (its lean forward, and transformers' own for the row check). The checks: the
mask against one built from ancestor sets; the tree forward's rows against transformers' plain
forward of each root-to-node path; `Decoder.generate` at greedy when the first round must walk
into a branch placed behind decoy siblings (output and the rows the verifier was given); and the
exact output distribution at T > 0 when every token the target may emit is a tree node. Each
check is also run with a mask that shows a node its siblings on an empty cache, and must fail.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence
from unittest import mock

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import specdec.integrations.hf as hf
from specdec import Decoder, Verifier
from specdec.draft import Branch, Draft
from specdec.integrations.hf import HFModel
from specdec.integrations.tree_attention import leading_chain, tree_mask
from specdec.proposer import ModelFree, ProposalRequest
from specdec.sampling import SamplingConfig
from specdec.strategies.policies import FixedPolicy
from specdec.testing import enumerate_outputs, target_distribution
from specdec.verification import Verification
from tests.models import model_path, real_model

# float32 tree rows against plain forwards differ by up to 3e-5 in a logit and 1e-7 in an output's
# probability; a node that sees a sibling moves logits by more than 1 and probabilities by 0.02
LOGIT_TOLERANCE = 1e-3
PROBABILITY_TOLERANCE = 1e-5
PROMPT = "Once upon a time"
Mask = Callable[..., torch.Tensor]


# ------------------------------------------------------------------------------ helpers
def plain_logits(target: HFModel, ids: Sequence[int]) -> torch.Tensor:
    """The target's logits after `ids` from transformers' own forward of the plain chain (no
    tree, no mask, no specdec cache)."""
    return _plain_logits(target.model, tuple(ids))


@functools.lru_cache(maxsize=4096)
def _plain_logits(model, ids: tuple[int, ...]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0, -1].float()


def paths(parents: Sequence[int], tokens: Sequence[int]) -> list[list[int]]:
    """The tokens from the root to each node, node by node."""
    out: list[list[int]] = []
    for parent, token in zip(parents, tokens):
        out.append((out[parent] if parent >= 0 else []) + [token])
    return out


def plain_rows(target: HFModel, context: Sequence[int], tails: Sequence[Sequence[int]]) -> torch.Tensor:
    """The target's logits after `context` + each tail, from one batched plain forward (each
    sequence padded at its end, which a causal model never reads back)."""
    rows = [list(context) + list(tail) for tail in tails]
    width = max(len(row) for row in rows)
    batch = torch.tensor([row + [0] * (width - len(row)) for row in rows])
    with torch.inference_mode():
        logits = target.model(batch).logits.float()
    return torch.stack([logits[i, len(row) - 1] for i, row in enumerate(rows)])


def assert_rows_are_chain_rows(target: HFModel, context: Sequence[int], draft: Draft, logits: torch.Tensor) -> None:
    """Row 0 is the target's after `context`, row j + 1 after `context` + the path to node j."""
    tree = draft.tree
    tails = [[]] + paths(tree.parents, tree.tokens)
    for row, (path, expected) in enumerate(zip(tails, plain_rows(target, context, tails))):
        gap = float((logits[row] - expected).abs().max())
        assert gap <= LOGIT_TOLERANCE, f"tree row {row} (path {path}) is {gap:.3g} off the plain forward of its path"


def fresh(model: HFModel) -> HFModel:
    """`model` with an empty cache: the next forward is a first round."""
    model.reset()
    return model


def sees_earlier_siblings(parents: Sequence[int], cached: int, causal_rows: int = 0) -> torch.Tensor:
    """Planted bug: on an empty cache a node also sees the earlier nodes that share its parent."""
    allowed = tree_mask(parents, cached, causal_rows)
    if cached == 0:
        for i in range(causal_rows, len(parents)):
            for j in range(i):
                if parents[j] == parents[i]:
                    allowed[i - causal_rows, j] = True
    return allowed


def sees_every_earlier_node(parents: Sequence[int], cached: int, causal_rows: int = 0) -> torch.Tensor:
    """Planted bug: on an empty cache the tree is attended causally, like the prompt before it."""
    allowed = tree_mask(parents, cached, causal_rows)
    if cached == 0:
        for i in range(causal_rows, len(parents)):
            allowed[i - causal_rows, : i + 1] = True
    return allowed


# ----------------------------------------------------------------------------- the mask
def reference_mask(parents: Sequence[int], cached: int) -> torch.Tensor:
    """[n, cached + n]: the cache, the node's ancestors and itself, from the ancestor sets."""
    allowed = torch.zeros(len(parents), cached + len(parents), dtype=torch.bool)
    for i in range(len(parents)):
        allowed[i, :cached] = True
        node = i
        while node >= 0:
            allowed[i, cached + node] = True
            node = parents[node]
    return allowed


@st.composite
def prompt_and_tree(draw) -> list[int]:
    """Parents of a prompt (a chain) followed by tree nodes hanging anywhere after it."""
    parents = [i - 1 for i in range(draw(st.integers(1, 5)))]
    for i in range(len(parents), len(parents) + draw(st.integers(0, 7))):
        parents.append(draw(st.integers(-1, i - 1)))
    return parents


@given(prompt_and_tree(), st.integers(0, 2))
def test_a_node_sees_only_the_cache_its_ancestors_and_itself(parents: list[int], cached: int):
    whole = reference_mask(parents, cached)
    for causal_rows in range(leading_chain(parents) + 1):
        assert torch.equal(tree_mask(parents, cached, causal_rows), whole[causal_rows:])


@pytest.mark.parametrize("mask", [sees_earlier_siblings, sees_every_earlier_node], ids=lambda m: m.__name__)
def test_the_reference_mask_differs_from_one_that_shows_a_node_its_siblings(mask: Mask):
    parents = [-1, 0, 1, 1, 1, 3]  # a prompt of two, a node, two siblings after it, a child
    assert not torch.equal(mask(parents, 0, 3), reference_mask(parents, 0)[3:])


# ------------------------------------------------------------------- the tree forward itself
# the prompt's draft: three tokens, two branches at the root (one two deep), two on node 0
# (one sharing node 1's token), one on node 1 and two after the draft's last node
TREE = Draft((432, 383, 286), branches=[Branch(0, (383, 298)), Branch(0, (322,)), Branch(1, (383, 261)), Branch(1, (376,)),
                                         Branch(2, (315,)), Branch(3, (421,)), Branch(3, (395, 317))])


def check_tree_rows(target: HFModel) -> None:
    ids = Decoder(target).encode(PROMPT)
    tree = TREE.tree
    links = [i - 1 for i in range(len(ids))] + [len(ids) - 1 if p < 0 else len(ids) + p for p in tree.parents]
    out = fresh(target).forward_tree(list(ids) + list(tree.tokens), links, keep=len(tree) + 1).logits
    assert_rows_are_chain_rows(target, ids, TREE, out)


@pytest.mark.parametrize("attn", [None, "eager"], ids=["lean", "transformers-eager"])
def test_first_round_tree_rows_equal_plain_forwards_of_each_path(attn: str | None):
    from specdec.integrations.loading import load_model

    target = real_model("stories260K") if attn is None else load_model(model_path("stories260K"), attn_implementation=attn)
    check_tree_rows(target)


# ------------------------------------------------------------------ greedy, through the decoder
@attrs.define
class TruthBehindDecoys(ModelFree):
    """Knows the target's greedy continuation and hides it in a branch: the draft is right for
    `at` tokens and then wrong, and at that point two decoy branches come first and the right
    continuation last, so the verifier must walk into a node whose earlier siblings it must not
    have seen. Records each round's context and draft."""

    reference: list[int]  # prompt + the target's greedy continuation
    vocab: int
    at: int = 0
    name = "truth-behind-decoys"
    rounds: list[tuple[tuple[int, ...], Draft]] = attrs.field(factory=list)

    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        self.rounds.clear()

    def propose(self, request: ProposalRequest) -> Draft:
        context = list(request.context)
        truth = self.reference[len(context):]
        if context != self.reference[: len(context)] or not truth:
            return request.draft()
        right = min(self.at, request.budget - 1)
        wrong = (truth[right] + 1) % self.vocab
        request.offer_each(truth[:right] + [wrong])
        at = min(right, len(request.tokens))
        room = request.tree_depth - at
        decoys = [((truth[at] + 2) % self.vocab, (truth[at] + 3) % self.vocab), ((truth[at] + 4) % self.vocab,)]
        branches = [Branch(at, tokens[:room]) for tokens in (*decoys, tuple(truth[at: at + 3]))] if room > 0 else []
        draft = request.draft(branches)
        self.rounds.append((tuple(context), draft))
        return draft

    def observe(self, verification: Verification) -> None:
        pass


@attrs.define
class RecordingVerifier(Verifier):
    """The verifier, keeping each round's draft, target logits and verdict."""

    seen: list[tuple[Draft, torch.Tensor, Verification]] = attrs.field(factory=list)

    def verify(self, draft, target_logits, sampling, sampler, eos_token_ids=frozenset()):
        verdict = super().verify(draft, target_logits, sampling, sampler, eos_token_ids)
        self.seen.append((draft, target_logits.clone(), verdict))
        return verdict


GREEDY_PROMPTS = ["Once upon a time", "Lily wanted to"]
GREEDY_TOKENS = 16


def check_greedy_through_branches(target: HFModel, at: int) -> None:
    """For each prompt, from an empty cache: the first round fed the whole prompt and tree in one
    forward and emitted tokens decided by branch rows, its rows are those of plain forwards of each
    path, the output is the target's own greedy output, and later rounds' rows are right too.

    The rows are compared, not only the output: an argmax survives a sibling's influence on most
    prompts (a sibling-seeing mask changes the greedy output of about one prompt in eight)."""
    for prompt in GREEDY_PROMPTS:
        ids = Decoder(target).encode(prompt)
        expected = list(Decoder(fresh(target)).generate(ids, GREEDY_TOKENS).ids)
        proposer = TruthBehindDecoys(list(ids) + expected, target.vocab_size, at)
        verifier = RecordingVerifier()
        decoder = Decoder(fresh(target), proposer=proposer, policy=FixedPolicy(4), verifier=verifier)
        with mock.patch.object(target, "forward_tree", wraps=target.forward_tree) as spy:
            got = list(decoder.generate(ids, GREEDY_TOKENS).ids)
        context, draft = proposer.rounds[0]
        first_draft, logits, verdict = verifier.seen[0]
        assert context == tuple(ids) and first_draft is draft and draft.branches
        fed = spy.call_args_list[0].args[0]
        assert fed == list(ids) + list(draft.tree.tokens), "the first round was not one forward of prompt and tree"
        assert verdict.branch_tokens >= 2, f"the first round took {verdict.branch_tokens} branch nodes, not the whole branch"
        assert_rows_are_chain_rows(target, ids, draft, logits)
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
        assert got == expected, f"greedy output differs from the target's at token {first} for {prompt!r}"
        logits_of = {id(seen): rows for seen, rows, _ in verifier.seen}
        for context, later in proposer.rounds[1:]:  # the later rounds, over a cache
            assert_rows_are_chain_rows(target, context, later, logits_of[id(later)])


@pytest.mark.parametrize("at", [0, 2], ids=["branch-at-root", "branch-at-node-1"])
def test_greedy_output_is_the_targets_when_the_first_round_walks_into_a_branch(at: int):
    check_greedy_through_branches(real_model("stories260K"), at)


# --------------------------------------------------------------- exact distribution at T > 0
SAMPLING = SamplingConfig(1.0, top_k=3)
NEW_TOKENS = 3


@attrs.define
class EveryLikelyToken(ModelFree):
    """Puts every token the target may emit (its top-k) into the tree, two levels deep: the draft
    is the runner-up at the root followed by the target's argmax, and the other root tokens and
    those after the draft's first token are branches. Every emitted token of a two-token round is
    then decided by a tree row, most of the probability going through branch nodes."""

    target: HFModel
    name = "every-likely-token"

    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        pass

    def _top(self, ids: Sequence[int]) -> list[int]:
        return plain_logits(self.target, ids).topk(SAMPLING.top_k).indices.tolist()

    def propose(self, request: ProposalRequest) -> Draft:
        context = list(request.context)
        best, runner_up, *rest = self._top(context)
        request.offer_each([runner_up, self._top(context + [runner_up])[0]][: request.budget])
        if request.tree_depth < 2 or len(request.tokens) < 2:
            return request.draft()
        branches = [Branch(0, (t, self._top(context + [t])[0])) for t in (best, *rest)]
        branches += [Branch(1, (t,)) for t in self._top(context + [runner_up])[1:]]
        return request.draft(branches)

    def observe(self, verification: Verification) -> None:
        pass


def check_exact_distribution(target: HFModel) -> None:
    """The probability of every output of fresh generations (each draw's every outcome, exactly)
    against the target's own distribution, computed from plain forwards."""
    ids = Decoder(target).encode(PROMPT)
    eos, s = frozenset(target.eos_token_ids), SAMPLING
    first_round_branch_nodes: list[int] = []

    def run(sampler) -> tuple[int, ...]:
        verifier = RecordingVerifier()
        decoder = Decoder(fresh(target), proposer=EveryLikelyToken(target), policy=FixedPolicy(2), verifier=verifier)
        out = decoder.generate(list(ids), NEW_TOKENS, temperature=s.temperature, top_k=s.top_k, sampler=sampler).ids
        draft = verifier.seen[0][0]
        first_round_branch_nodes.append(len(draft.tree) - len(draft))
        return tuple(out)

    got = enumerate_outputs(run)
    expected = target_distribution(functools.partial(plain_logits, target), ids, NEW_TOKENS, eos, s.temperature, s.top_k, None)
    assert min(first_round_branch_nodes) > 0, "a first round without branches"
    worst = max(got.keys() | expected.keys(), key=lambda seq: abs(got.get(seq, 0.0) - expected.get(seq, 0.0)))
    gap = abs(got.get(worst, 0.0) - expected.get(worst, 0.0))
    assert gap <= PROBABILITY_TOLERANCE, (
        f"output {list(worst)} has probability {got.get(worst, 0.0):.6f}, the target's is {expected.get(worst, 0.0):.6f}"
    )


def test_first_round_branches_keep_the_exact_output_distribution():
    check_exact_distribution(real_model("stories260K"))


# ------------------------------------------------------------------------------ planted bugs
CHECKS: dict[str, Callable[[HFModel], None]] = {
    "tree-rows": check_tree_rows,
    "greedy-at-root": lambda target: check_greedy_through_branches(target, 0),
    "greedy-at-node-1": lambda target: check_greedy_through_branches(target, 2),
    "exact-distribution": check_exact_distribution,
}


@pytest.mark.parametrize("mask", [sees_earlier_siblings, sees_every_earlier_node], ids=lambda m: m.__name__)
@pytest.mark.parametrize("check", list(CHECKS))
def test_each_check_catches_a_first_round_mask_that_shows_a_node_its_siblings(monkeypatch, check: str, mask: Mask):
    monkeypatch.setattr(hf, "tree_mask", mask)
    with pytest.raises(AssertionError, match="off the plain forward|differs from the target's|has probability"):
        CHECKS[check](real_model("stories260K"))
