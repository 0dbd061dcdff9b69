"""The oracle policy: drafts exactly the target's own continuation."""

from __future__ import annotations

import pytest

from specdec import ConfigurationError, Decision, Decoder, DraftFeatures, RoundState, Verification
from specdec.integrations.toy import ToyModel
from specdec.strategies.policies import OraclePolicy
from specdec.strategies.proposers import DraftModelProposer
from tests.policy_helpers import STATE, feats


def test_oracle_drafts_exactly_the_continuation():
    policy = OraclePolicy(continuation=[5, 6, 7, 8, 9, 10])
    assert policy.begin_round(RoundState(context_length=2, generated=0, remaining=10)) == 4
    assert policy.should_draft(DraftFeatures(0, top_token=7))
    assert policy.decide(feats(token=7, position=0)) is Decision.CONTINUE
    assert policy.should_draft(DraftFeatures(1, top_token=8))
    assert not policy.should_draft(DraftFeatures(2, top_token=0))  # first mismatch, at absolute index 4
    assert not policy.should_draft(DraftFeatures(4, top_token=10))  # past the continuation's end
    # a token drawn at random off the greedy path is kept (never dropped for its value), then stop
    assert policy.decide(feats(token=0, position=1)) is Decision.STOP
    assert policy.begin_round(RoundState(context_length=6, generated=4, remaining=10)) == 0
    policy.observe(Verification(2, 1, (7, 1), context_length=2))
    assert policy.diverged_at == 3


def test_oracle_without_a_continuation_refuses_to_run():
    policy = OraclePolicy()
    with pytest.raises(ConfigurationError, match="continuation"):
        policy.begin_round(STATE)
    policy.set_continuation([1, 2, 3, 4])
    assert policy.begin_round(STATE) == 1


def _cycle(vocab: int, favourite: dict[int, int], name: str) -> ToyModel:
    """An order-1 toy model whose most likely next token after t is favourite[t] (prob .7)."""
    table = {}
    for key in [()] + [(t,) for t in range(vocab)]:
        best = favourite[key[0] if key else 0]
        table[key] = [0.7 if v == best else 0.3 / (vocab - 1) for v in range(vocab)]
    return ToyModel.from_probabilities(table, vocab, name=name)


def test_oracle_from_target_accepts_every_drafted_token():
    target = _cycle(4, {0: 1, 1: 2, 2: 3, 3: 0}, "target")
    draft = _cycle(4, {0: 1, 1: 2, 2: 0, 3: 0}, "draft")  # wrong after token 2
    prompt = [1]
    plain = Decoder(target).generate(prompt, 12)
    oracle = OraclePolicy.from_target(target, prompt, 12)
    assert oracle.continuation == (1,) + plain.ids
    result = Decoder(target, proposer=DraftModelProposer(draft), policy=oracle).generate(prompt, 12)
    assert result.ids == plain.ids
    assert result.stats.drafted > 0 and result.stats.accepted == result.stats.drafted
    assert oracle.diverged_at is None
    via_decoder = OraclePolicy.from_target(Decoder(target, proposer=DraftModelProposer(draft)), prompt, 12, max_draft=2)
    assert via_decoder.continuation == oracle.continuation and via_decoder.max_draft == 2


def test_the_decoder_prepares_a_policy_that_needs_the_targets_output_and_only_that_one():
    from specdec import Decoder
    from specdec.integrations.toy import ToyModel
    from specdec.plugins import make_policy
    from specdec.strategies.proposers import DraftModelProposer

    table = {(): [0.1, 0.2, 0.7], (0,): [0.6, 0.3, 0.1], (1,): [0.1, 0.1, 0.8], (2,): [0.3, 0.5, 0.2]}
    target = ToyModel.from_probabilities(table, 3)
    draft = ToyModel.from_probabilities({k: v[::-1] for k, v in table.items()}, 3)
    reference = Decoder(target).generate([1], 6)
    oracle = Decoder(target, proposer=DraftModelProposer(draft), policy=make_policy("oracle"))
    assert oracle.prepare([1], 6)
    assert oracle.policy.continuation == (1, *reference.ids)
    result = oracle.generate([1], 6)
    assert result.ids == reference.ids and result.stats.drafted == result.stats.accepted  # drafts exactly what is kept
    assert not Decoder(target, proposer=DraftModelProposer(draft), policy=make_policy("fixed")).prepare([1], 6)
