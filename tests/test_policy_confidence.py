"""The confidence policy's threshold rule and its refit from verified outcomes."""

from __future__ import annotations

from specdec import Decision
from specdec.features import deterministic_features
from specdec.strategies.policies import ConfidencePolicy
from specdec.strategies.policies.confidence import roc_threshold
from tests.policy_helpers import STATE, feats, verdict


def test_confidence_keeps_the_token_and_stops_below_the_threshold():
    policy = ConfidencePolicy()
    assert policy.begin_round(STATE) == 20
    assert policy.decide(feats(prob=0.4)) is Decision.CONTINUE
    assert policy.decide(feats(prob=0.39)) is Decision.STOP
    assert policy.decide(deterministic_features(2, 0)) is Decision.CONTINUE


def test_roc_threshold_minimises_fpr_plus_three_fnr():
    # accepted 0.9 0.8 0.6 0.35, rejected 0.7 0.3 0.2 (P=4, N=3). FPR + 3 FNR at each threshold:
    # .9: 0+2.25  .8: 0+1.5  .7: 1/3+1.5  .6: 1/3+.75  .35: 1/3+0  .3: 2/3  .2: 1  ->  0.35
    samples = [(0.9, True), (0.7, False), (0.8, True), (0.6, True), (0.35, True), (0.3, False), (0.2, False)]
    assert roc_threshold(samples) == 0.35
    # accepted .9 .8 .1, rejected .5 .4 .3 .2: cost 1 at both .8 (0 + 3/3) and .1 (4/4 + 0): the highest wins
    tie = [(0.9, True), (0.8, True), (0.1, True), (0.5, False), (0.4, False), (0.3, False), (0.2, False)]
    assert roc_threshold(tie) == 0.8
    assert roc_threshold([(0.5, True), (0.4, True)]) is None


def test_confidence_refits_its_threshold_from_verified_outcomes():
    policy = ConfidencePolicy(adapt=True)

    def round_(probs: list[float], accepted: int) -> list[Decision]:
        policy.begin_round(STATE)
        decisions = [policy.decide(feats(prob=p, position=i)) for i, p in enumerate(probs)]
        policy.observe(verdict(len(probs), accepted))
        return decisions

    assert round_([0.9, 0.8, 0.7], 2) == [Decision.CONTINUE] * 3
    assert round_([0.6, 0.35], 2)[-1] is Decision.STOP
    assert len(policy.samples) == 5 and policy.current == 0.4  # not more than 5 samples yet
    round_([0.3], 0)
    # accepted .9 .8 .6 .35, rejected .7 .3: costs .9 2.25, .8 1.5, .7 2, .6 1.25, .35 .5, .3 1
    assert policy.current == 0.35
    assert policy.decide(feats(prob=0.36)) is Decision.CONTINUE
    round_([0.5, 0.2], 0)  # the token after the first rejection is not a sample
    assert len(policy.samples) == 7


def test_confidence_does_not_adapt_by_default_and_bounds_its_history():
    fixed = ConfidencePolicy()
    bounded = ConfidencePolicy(adapt=True, history=6)
    for policy in (fixed, bounded):
        for _ in range(10):
            policy.begin_round(STATE)
            policy.decide(feats(prob=0.9))
            policy.decide(feats(prob=0.8, position=1))
            policy.observe(verdict(2, 1))
    assert fixed.current == 0.4 and not fixed.samples
    assert len(bounded.samples) == 6 and bounded.current == 0.9  # 3 accepted at .9, 3 rejected at .8
