"""The heuristic policy's length rule: grow after a clean round, shrink after a rejection."""

from __future__ import annotations

from specdec import Decision
from specdec.strategies.policies import HeuristicPolicy
from tests.policy_helpers import STATE, feats, verdict


def test_heuristic_adds_two_after_a_clean_round_and_removes_one_after_a_rejection():
    policy = HeuristicPolicy()
    policy.start()
    assert policy.begin_round(STATE) == 5
    policy.observe(verdict(5, 5))
    assert policy.begin_round(STATE) == 7
    policy.observe(verdict(7, 3))
    assert policy.begin_round(STATE) == 6
    policy.observe(verdict(0, 0))  # a plain target step changes nothing
    assert policy.begin_round(STATE) == 6
    assert policy.decide(feats(prob=0.01, entropy=9.0)) is Decision.CONTINUE


def test_heuristic_is_clipped_to_one_and_to_max_draft():
    policy = HeuristicPolicy(k=4, max_draft=5)
    policy.observe(verdict(4, 4))
    assert policy.begin_round(STATE) == 5
    policy.observe(verdict(5, 5))
    assert policy.begin_round(STATE) == 5
    for _ in range(6):
        policy.observe(verdict(1, 0))
    assert policy.begin_round(STATE) == 1
    assert HeuristicPolicy(k=9, max_draft=3).begin_round(STATE) == 3


def test_heuristic_restarts_each_call_unless_persistent():
    transient, persistent = HeuristicPolicy(k=2), HeuristicPolicy(k=2, persist=True)
    for policy in (transient, persistent):
        policy.observe(verdict(2, 2))
        policy.start()
    assert transient.begin_round(STATE) == 2
    assert persistent.begin_round(STATE) == 4
