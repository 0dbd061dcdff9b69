"""OuroborosProposer: phrase drafting, pool feeding and bounds, warm start, real-pair identity.

Losslessness for every policy (greedy and T > 0, with branches) is in test_lossless_exact.py
through `PROPOSER_STRATEGIES["ouroboros"]`; these tests check the mechanism and its costs.
"""

from __future__ import annotations

import random

import attrs
import pytest

from specdec import Decoder
from specdec.errors import ConfigurationError
from specdec.integrations.toy import ToyModel
from specdec.payoff import Payoff
from specdec.strategies.proposers.phrase_pool import PhrasePool
from specdec.cli.values import build_strategy
from specdec.plugins import registry
from specdec.policy import Decision
from specdec.proposer import ProposalRequest
from specdec.samplers import TorchSampler
from specdec.sampling import SamplingConfig
from specdec.strategies.policies import CostAwarePolicy, FixedPolicy
from specdec.strategies.proposers import DraftModelProposer, OuroborosProposer, PromptLookupProposer
from specdec.testing import seeded_toy
from tests.models import real_model


def toy(vocab: int = 6, order: int = 2, seed: int = 0, sharp: float = 4.0) -> ToyModel:
    """A random table model with peaked rows (so greedy text repeats and phrases recur)."""
    return seeded_toy(vocab, order, seed, scale=sharp)


class CheapSlots(FixedPolicy):
    """FixedPolicy whose verify slot costs 0.05 of a target step (the default is 0.1)."""

    payoff = Payoff(token_cost=0.05)


@attrs.define
class Recorder(FixedPolicy):
    """FixedPolicy that records every question the proposer asks."""

    asked: list = attrs.field(factory=list)
    decided: list = attrs.field(factory=list)

    def should_draft(self, features):
        self.asked.append(features.position)
        return True

    def decide(self, features):
        self.decided.append((features.position, features.token, features.deterministic))
        return Decision.CONTINUE


class Spy(OuroborosProposer):
    drafts: list
    cache_checks: list

    def propose(self, request):
        steps = self.stats.draft_steps
        draft = super().propose(request)
        self.drafts.append(draft)
        if self.stats.draft_steps > steps:  # the draft model ran this round (not only copies)
            cached, context = self._cache.ids, list(request.context)
            read = cached[len(context):]
            self.cache_checks.append(cached[: len(context)] == context and read == list(draft.tokens[: len(read)]))
        return draft


def spy(model, **kw) -> Spy:
    proposer = Spy(model, **kw)
    proposer.drafts = []
    proposer.cache_checks = []
    return proposer


def test_phrase_tokens_go_through_the_policy_with_draft_features():
    target = toy(seed=1)
    draft_model = toy(seed=1)  # the draft agrees with the target: phrases from the output are agreed
    policy = Recorder(k=6)
    proposer = spy(draft_model, branches=0, copy=False)  # copies are deterministic: tested below
    result = Decoder(target, proposer=proposer, policy=policy).generate([1, 2, 3], 40)
    assert result.ids == Decoder(target).generate([1, 2, 3], 40).ids
    assert proposer.stats.phrase_tokens > 0  # some forwards added agreed phrase tokens
    drafted = [t for d in proposer.drafts for t in d.tokens]
    assert [tok for _, tok, _ in policy.decided] == drafted  # every token, phrase tokens included
    assert not any(det for _, _, det in policy.decided)  # features come from the draft's logits
    assert len(policy.asked) == len(policy.decided)
    assert proposer.stats.draft_steps < proposer.stats.draft_tokens  # > 1 token per draft forward


def test_context_copies_are_deterministic_draft_tokens_that_the_draft_then_reads():
    target = toy(seed=1)
    prompt = Decoder(target).generate([1, 2, 3], 30).ids  # the target's own text: copies of it are accepted
    policy = Recorder(k=8)
    proposer = spy(toy(seed=7), branches=0)  # a draft that disagrees with the target
    decoder = Decoder(target, proposer=proposer, policy=policy)
    ids = [1, 2, 3, *prompt[:20], 1, 2, 3]  # the output will repeat the context from here
    result = decoder.generate(ids, 24)
    assert result.ids == Decoder(target).generate(ids, 24).ids
    assert proposer.stats.copied_tokens > 0
    copied = [(position, token) for position, token, deterministic in policy.decided if deterministic]
    assert len(copied) == proposer.stats.copied_tokens
    # after every proposal the draft model had read the context and then a prefix of the draft
    # (copies included, in order): what it drafted after a copy was conditioned on that copy
    assert proposer.cache_checks and all(proposer.cache_checks)
    assert result.stats.accepted >= proposer.stats.copied_tokens // 2


@attrs.define
class NoCopies(Recorder):
    """Declines every deterministic token before it is kept."""

    def should_draft(self, features):
        self.asked.append((features.position, features.deterministic))
        return not features.deterministic


def test_a_declined_copy_leaves_the_position_to_the_draft_model():
    target = toy(seed=1)
    prompt = Decoder(target).generate([1, 2, 3], 30).ids
    ids = [1, 2, 3, *prompt[:20], 1, 2, 3]  # copies are found from here on
    policy = NoCopies(k=4)
    proposer = spy(toy(seed=1), branches=0)
    result = Decoder(target, proposer=proposer, policy=policy).generate(ids, 24)
    assert result.ids == Decoder(target).generate(ids, 24).ids
    declined = [position for position, deterministic in policy.asked if deterministic]
    assert declined and proposer.stats.copied_tokens == 0
    # every declined copy was followed by the draft model's own token at the same position
    model_positions = {position for position, _, deterministic in policy.decided if not deterministic}
    assert set(declined) <= model_positions
    assert result.stats.drafted > 0 and proposer.stats.draft_steps > 0


def test_copies_stop_while_the_target_rejects_them():
    target = toy(seed=1)
    proposer = spy(toy(seed=1), branches=0)  # the draft agrees with the target
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(4))
    # a context full of a pattern the target never continues with: copies keep being rejected
    ids = [4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 1, 2, 3]
    result = decoder.generate(ids, 40)
    assert result.ids == Decoder(target).generate(ids, 40).ids
    copies, stats = proposer.copies, proposer.stats
    # tried, then closed behind the draft's better record: copies stay a small share of the drafts
    assert 0 < stats.copied_tokens < stats.draft_tokens / 4
    assert copies.gate.entry.value < copies.draft_entry.value


@pytest.mark.parametrize(
    ("continuation", "adaptive", "expected"),
    [(0.0, True, 1), (0.6, True, 6), (0.99, True, 8), (0.0, False, 8)],
)
def test_a_copy_is_cut_to_the_length_its_record_pays_for(continuation, adaptive, expected):
    """Each copied token is offered with its survival from the copy record; the policy's payoff
    keeps it while its reach (entry * cont**(k-1)) exceeds a verify slot's price, even under a
    policy that keeps every deterministic token (fixed k, SVIP: zero entropy). Without
    `adaptive` no survival is reported and the whole copy is offered."""
    context = [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 3, 0, 1]  # "0 1" was followed by 2 3 4 5 2 3 4 5
    proposer = OuroborosProposer(toy(), branches=0, copy_length=8, adaptive=adaptive)
    proposer.start(context, SamplingConfig())
    proposer.copies.gate.entry = proposer_rate(0.9)
    proposer.copies.draft_entry = proposer_rate(0.1)
    proposer.copies.gate.cont = proposer_rate(continuation)
    request = ProposalRequest(context, 16, CheapSlots(16), SamplingConfig(), TorchSampler(0))
    proposer.copies.offer(request, [])
    tokens = list(request.tokens)
    # 0.9 * 0.6**k > 0.05 for k <= 5: six tokens
    assert tokens == [2, 3, 4, 5, 2, 3, 4, 5][:expected]


@pytest.mark.parametrize(("prior", "expected"), [(0.5, 4), (0.75, 8), (0.2, 0)])
def test_the_copy_prior_sets_the_first_copy_of_a_call(prior, expected):
    """Before a call has any record, the copy gate's rates are `copy_prior`: the first copy is cut
    where prior**k drops to a verify slot's price (0.5**4 > 0.05 >= 0.5**5: 4 tokens), and a prior
    below the draft's (1 in 2) leaves the position to the draft model."""
    context = [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 3, 0, 1]
    proposer = OuroborosProposer(toy(), branches=0, copy_length=8, copy_prior=prior)
    proposer.start(context, SamplingConfig())
    request = ProposalRequest(context, 16, CheapSlots(16), SamplingConfig(), TorchSampler(0))
    proposer.copies.offer(request, [])
    tokens = list(request.tokens)
    assert tokens == [2, 3, 4, 5, 2, 3, 4, 5][:expected]


@pytest.mark.parametrize(
    ("continuation", "draft_rate", "drafts_on"),
    [(0.99, 0.9, True), (0.3, 0.3, False), (0.99, 0.1, False)],
)
def test_the_draft_model_runs_after_a_copy_only_while_that_pays(continuation, draft_rate, drafts_on):
    """A draft token after a copy counts only if the whole copy is accepted: the proposer reports
    the draft's own record as the forward's survival, and the policy's payoff ends the draft after
    the copy unless P(whole copy) x that record pays for a draft forward and a verify slot."""
    context = [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 3, 0, 1]
    draft = toy()
    proposer = OuroborosProposer(draft, branches=0, copy_length=4)
    proposer.start(context, SamplingConfig())
    proposer.copies.gate.entry = proposer_rate(0.9)
    proposer.copies.draft_entry = proposer_rate(draft_rate)
    proposer.copies.gate.cont = proposer_rate(continuation)
    before = draft.forwards
    proposed = proposer.propose(ProposalRequest(context, 16, FixedPolicy(16), SamplingConfig(), TorchSampler(0)))
    copied = proposer.stats.copied_tokens
    assert copied >= 1 and list(proposed.tokens[:2]) == [2, 3]
    assert (draft.forwards > before) is drafts_on
    assert (len(proposed) > copied) is drafts_on  # the draft model's own tokens follow the copies


def test_other_copy_candidates_become_branches_where_they_part():
    """With copy_candidates > 1 the older continuations of the matched n-gram are offered to the
    target as branches hung where they part from the copy, and the target follows the one it
    prefers in the same forward (here the older one: the copy is rejected at its second token)."""
    tail = [0, 1]
    # "0 1" was followed by 2 3 4 (older) and by 2 5 4 (newer, so that is the copy)
    context = [6, 0, 1, 2, 3, 4, 6, 0, 1, 2, 5, 4, 6, *tail]
    proposer = OuroborosProposer(toy(vocab=7), max_ngram=2, copy_length=3, copy_candidates=2, branches=2, adaptive=False)
    proposer.start(context, SamplingConfig())
    proposer.copies.gate.entry = proposer_rate(0.9)
    proposer.copies.draft_entry = proposer_rate(0.1)
    alternatives: list = []
    request = ProposalRequest(context, 3, FixedPolicy(3), SamplingConfig(), TorchSampler(0), frozenset(), 6)
    proposer.copies.offer(request, alternatives)
    tokens = list(request.tokens)
    assert tokens == [2, 5, 4]
    assert [(b.at, b.tokens, source) for b, source in alternatives] == [(1, (3, 4), "copy")]
    branches = proposer.branching.choose(request, tokens, alternatives)
    assert [(b.at, b.tokens) for b in branches][:1] == [(1, (3, 4))] and proposer.branching.kinds[0] == "parted:copy"
    # one copy candidate (the default): no alternatives
    single = OuroborosProposer(toy(vocab=7), max_ngram=2, copy_length=3, branches=2, adaptive=False)
    single.start(context, SamplingConfig())
    single.copies.gate.entry, single.copies.draft_entry = proposer_rate(0.9), proposer_rate(0.1)
    alternatives = []
    single.copies.offer(ProposalRequest(context, 3, FixedPolicy(3), SamplingConfig(), TorchSampler(0), frozenset(), 6), alternatives)
    assert alternatives == []


def chain_target(following: dict[int, int], vocab: int = 7) -> ToyModel:
    """A bigram model whose greedy choice after token a is following[a]."""
    table = {(): [0.0] * vocab}
    for a, b in following.items():
        table[(a,)] = [5.0 if t == b else 0.0 for t in range(vocab)]
    return ToyModel(table, vocab, order=1)


def test_a_target_that_prefers_an_older_copy_takes_it_from_a_branch():
    """End to end: the copy proposes the newest continuation of "0 1" (2 5 4 ...), the target
    continues as the older one did (2 3 4 6 0); verified as a branch, the older copy is emitted in
    the same forward, so one target forward gives 6 tokens instead of 2."""
    target = chain_target({0: 1, 1: 2, 2: 3, 3: 4, 4: 6, 6: 0, 5: 4})
    ids = [6, 0, 1, 2, 3, 4, 6, 0, 1, 2, 5, 4, 6, 0, 1]
    reference = Decoder(target).generate(ids, 6).ids
    forwards = {}
    for candidates in (1, 2):
        proposer = spy(toy(vocab=7, seed=7), copy_candidates=candidates, branches=2, copy_length=5, adaptive=False)
        result = Decoder(target, proposer=proposer, policy=FixedPolicy(5)).generate(ids, 6)
        assert result.ids == reference
        forwards[candidates] = result.stats.target_forwards
    assert proposer.drafts[0].tokens == (2, 5, 4, 6, 0)
    assert (1, (3, 4, 6, 0)) in [(b.at, b.tokens) for b in proposer.drafts[0].branches]
    assert forwards == {1: 2, 2: 1}


def proposer_rate(value: float):
    from specdec.strategies.proposers.ouroboros.gates import rate

    return rate(hits=value * 1000, trials=1000.0)


@pytest.mark.parametrize("kind", ["ouroboros", "prompt-lookup", "draft"])
def test_auto_takes_copies_on_a_long_prompt_without_reading_it_with_the_draft(kind):
    """Reading a long prompt with the draft does not pay here (catch-up .05 of a step per token, no
    evidence yet), but copying from it needs no draft forward: `auto` opens rounds to copies and
    lookups only (`allows_forward` is False), and the draft model never runs."""
    target = toy(seed=1)
    text = Decoder(target).generate([1, 2, 3], 80).ids
    ids = [1, 2, 3, *text[:70], 1, 2, 3]  # 76 unread tokens; the output repeats the prompt
    draft = toy(seed=7)
    proposer = {
        "ouroboros": lambda: OuroborosProposer(draft, branches=0),
        "prompt-lookup": lambda: PromptLookupProposer(),
        "draft": lambda: DraftModelProposer(draft),
    }[kind]()
    policy = CostAwarePolicy(measure=False, catchup_cost=0.05)
    result = Decoder(target, proposer=proposer, policy=policy).generate(ids, 24)
    assert result.ids == Decoder(target).generate(ids, 24).ids
    assert draft.forwards == 0
    if kind == "draft":  # nothing to copy without a model: plain steps
        assert result.stats.drafted == 0
    else:
        assert result.stats.accepted >= 12 and result.stats.target_forwards <= 12
        assert policy._verified_rounds == 0  # copies are no evidence about the draft


def test_sampling_drafts_are_deterministic_proposals():
    proposer = spy(toy(seed=2), branches=2)
    Decoder(toy(seed=3), proposer=proposer, policy=FixedPolicy(3)).generate([1, 2], 30, temperature=1.0, seed=5)
    assert proposer.drafts and all(q is None for d in proposer.drafts for q in d.q)


def test_branches_are_verified_and_harvested():
    target = toy(seed=4)
    proposer = OuroborosProposer(toy(seed=5), branches=3, branch_length=3)
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(2))
    result = decoder.generate([1, 2, 1, 2, 3], 60)
    assert result.ids == Decoder(target).generate([1, 2, 1, 2, 3], 60).ids
    assert result.stats.branch_offered > 0 and result.stats.branch_accepted > 0
    assert len(proposer.pool) > 0


@pytest.mark.exhaustive
def test_pool_memory_stays_bounded_over_1000_generations():
    rng = random.Random(0)
    target, draft = toy(vocab=8, seed=6, sharp=1.5), toy(vocab=8, seed=7, sharp=1.5)
    proposer = OuroborosProposer(draft, max_keys=5, max_phrases=3, phrase_length=4, branches=2, warm_start=True)
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(3))
    largest = 0
    for i in range(1000):
        prompt = [rng.randrange(8) for _ in range(rng.randint(1, 12))]
        decoder.generate(prompt, 8, temperature=rng.choice([0.0, 1.0]), seed=i)
        pool = proposer.pool
        assert len(pool.keys) <= 5 and len(pool) <= 15 and pool.stored_tokens() <= 5 * 3 * 4
        largest = max(largest, len(pool))
    assert largest == 15  # the bound was reached, and held


def test_warm_start_keeps_the_pool_and_it_saves_and_loads(tmp_path):
    target = toy(seed=8)
    warm = OuroborosProposer(toy(seed=9), warm_start=True)
    decoder = Decoder(target, proposer=warm, policy=FixedPolicy(3))
    decoder.generate([1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2], 20)
    held = warm.pool.to_dict()
    assert held["table"]
    decoder.generate([3], 1)  # a new call (a single plain target step): the pool is kept
    assert warm.pool.to_dict() == held
    path = tmp_path / "pool.json"
    warm.save_pool(path)
    loaded = OuroborosProposer(toy(seed=9), pool_file=str(path))
    assert loaded.pool.to_dict() == warm.pool.to_dict()
    cold = OuroborosProposer(toy(seed=9), warm_start=False, pool=PhrasePool.load(path))
    assert len(cold.pool) == len(warm.pool)
    Decoder(target, proposer=cold, policy=FixedPolicy(3)).generate([4], 1)
    assert len(cold.pool) == 0  # without warm start, every call begins with an empty pool
    with pytest.raises(ConfigurationError, match="no path"):
        OuroborosProposer(toy()).save_pool()


def test_a_pool_with_foreign_tokens_is_refused():
    pool = PhrasePool()
    pool.add(1, [99])
    with pytest.raises(ConfigurationError, match="outside the draft's vocabulary"):
        OuroborosProposer(toy(vocab=6), pool=pool)


def test_the_registry_builds_it_from_command_line_strings():
    proposer = build_strategy(registry(), 
        "proposer", "ouroboros", {"branches": "2", "warm_start": "false", "phrase_length": "5"}, model=toy()
    )
    assert isinstance(proposer, OuroborosProposer)
    assert proposer.branches == 2 and proposer.warm_start is False and proposer.pool.phrase_length == 5
    with pytest.raises(ConfigurationError):
        build_strategy(registry(), "proposer", "ouroboros", {"branch_length": "0"}, model=toy())


def test_fewer_draft_forwards_than_the_plain_draft_on_the_tiny_pair():
    target, draft = real_model("stories260K"), real_model("stories260K-draft")
    prompt = "Once upon a time there was a little dog. The little dog liked to play. Once upon a time"
    plain = Decoder(target, proposer=DraftModelProposer(draft), policy=FixedPolicy(4))
    ouro = Decoder(target, proposer=OuroborosProposer(draft, warm_start=False), policy=FixedPolicy(4))
    ids = plain.encode(prompt)
    expected = Decoder(target).generate(ids, 64).ids
    a, b = plain.generate(ids, 64), ouro.generate(ids, 64)
    assert a.ids == expected and b.ids == expected
    assert b.stats.draft_forwards / b.stats.generated < a.stats.draft_forwards / a.stats.generated


# ------------------------------------------------------------------------ the default pair
@pytest.mark.slow
@pytest.mark.parametrize(
    "settings", [{}, {"branches": 3, "draft_phrases": 2}, {"int8": True, "head_tokens": 16384}], ids=["default", "wide", "int8-head"]
)
def test_default_pair_greedy_output_is_the_targets(settings):
    from tests.test_real_greedy_identity import hf_greedy, spec_bench_prompts

    target = real_model("smollm2-135m-instruct")
    proposer = OuroborosProposer(real_model("smollm2-draft"), **settings)
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(4))
    for prompt in spec_bench_prompts(3):
        ids = decoder.encode(prompt, chat=True)
        got = list(decoder.generate(ids, 64).ids)
        expected = hf_greedy(target, ids, 64)
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
        assert got == expected, f"first divergence at token {first} for prompt {prompt[:60]!r}"
    assert proposer.stats.phrase_tokens > 0


class Recording(OuroborosProposer):
    rounds: list

    def propose(self, request):
        draft = super().propose(request)
        self.rounds.append((list(request.context), draft.tokens))
        return draft


def greedy_continuation(model, context, n):
    """The draft's own greedy continuation, from scratch (no cache reuse)."""
    model.reset()
    seq = list(context)
    out = []
    logits = model.forward(seq, keep=1).logits[-1]
    for _ in range(n):
        out.append(int(logits.argmax()))
        logits = model.forward([out[-1]], keep=1).logits[-1]
    model.reset()
    return tuple(out)


@pytest.mark.parametrize("draft_phrases", [1, 3])
def test_phrase_drafting_proposes_exactly_the_drafts_greedy_continuation(draft_phrases):
    """Phrases only save forwards: the draft tokens are the draft model's greedy tokens (so the
    draft cache, cropped and compacted around the phrases, stays right). Copies, which are not the
    draft's tokens, are off here and checked by the copy tests above."""
    target, draft_model = toy(seed=10), toy(seed=11, sharp=6.0)
    proposer = Recording(draft_model, draft_phrases=draft_phrases, branches=2, copy=False)  # copies are not the draft's
    proposer.rounds = []
    Decoder(target, proposer=proposer, policy=FixedPolicy(5)).generate([1, 2, 3, 1, 2, 3, 1], 60)
    assert proposer.stats.phrase_tokens > 0
    reference = toy(seed=11, sharp=6.0)
    for context, tokens in proposer.rounds:
        assert tokens == greedy_continuation(reference, context, len(tokens))


def test_phrase_drafting_on_a_real_draft_matches_its_greedy_continuation():
    target, draft_model = real_model("stories260K"), real_model("stories260K-draft")
    proposer = Recording(draft_model, draft_phrases=2, branches=1, copy=False)
    proposer.rounds = []
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(5))
    decoder.generate(decoder.encode("The cat sat. The cat sat. The cat sat on the"), 48)
    assert proposer.stats.phrase_tokens > 0
    from specdec.integrations.loading import load_model
    from tests.models import model_path

    fresh = load_model(model_path("stories260K-draft"))
    for context, tokens in proposer.rounds:
        assert tokens == greedy_continuation(fresh, context, len(tokens))


def test_worth_length_keeps_tokens_while_they_pay():
    from specdec.strategies.proposers.ouroboros.gates import rate, worth_length

    assert worth_length(0.5, 0.5, 0.15, 6) == 2  # 0.5, 0.25 > 0.15 > 0.125
    assert worth_length(0.9, 0.9, 0.15, 6) == 6
    assert worth_length(0.1, 0.9, 0.15, 6) == 0  # the first token does not pay
    assert worth_length(0.6, 0.0, 0.1, 6) == 1
    assert worth_length(0.6, 1.0, 0.1, 4) == 4
    record = rate()
    for _ in range(100):
        record.add(0, 1)
    assert record.value < 0.01


def test_cost_gates_cut_phrases_and_branches_to_what_pays():
    from specdec.strategies.proposers.ouroboros.gates import PROBE_EVERY, rate

    proposer = OuroborosProposer(toy(), max_ngram=1, phrase_length=6)
    proposer.start([1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1], SamplingConfig())
    context = [1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1]
    proposer.phrases.gate("context").rate = rate(95, 100)  # the draft nearly always agrees: feed it all
    fed, found = proposer.phrases.for_forward(context, [], 10)
    assert fed == found == [((2, 3, 4, 5, 0, 1), "context")]
    proposer.phrases.gate("context").rate = rate(0, 100)  # never agrees: feed nothing, but probe now and then
    rounds = [proposer.phrases.for_forward(context, [], 10) for _ in range(2 * PROBE_EVERY)]
    assert all(found == [((2, 3, 4, 5, 0, 1), "context")] for _, found in rounds)  # still branch candidates
    assert [i for i, (fed, _) in enumerate(rounds) if fed] == [PROBE_EVERY - 1, 2 * PROBE_EVERY - 1]
    # branches: a kind whose first token is rarely emitted is skipped; a reliable one gets length
    request = ProposalRequest(context, 4, FixedPolicy(4), SamplingConfig(), TorchSampler(0), frozenset(), 10)
    proposer.branching.gate.entry, proposer.branching.gate.cont = rate(90, 100), rate(80, 100)
    branches = proposer.branching.choose(request, [2, 3], [])
    assert proposer.branching.kinds == ["suffix:context"] and len(branches[0].tokens) == proposer.branch_length
    proposer.branching.gate.entry = rate(1, 100)
    assert all(proposer.branching.choose(request, [2, 3], []) == [] for _ in range(PROBE_EVERY - 2))
    fixed = OuroborosProposer(toy(), max_ngram=1, adaptive=False)
    fixed.start(context, SamplingConfig())
    fixed.phrases.gate("context").rate = rate(0, 100)  # not adaptive: phrases are fed whole regardless
    assert fixed.phrases.for_forward(context, [], 10)[0] == [((2, 3, 4, 5, 0, 1), "context")]
