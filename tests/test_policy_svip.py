"""SVIP's entropy stop rule, on hand-computed cases."""

from __future__ import annotations

from specdec import Decision
from specdec.features import deterministic_features
from specdec.strategies.policies import SvipPolicy
from tests.policy_helpers import STATE, feats


def test_svip_stops_after_the_first_token_above_0_6_nats():
    policy = SvipPolicy()
    assert policy.begin_round(STATE) == 40
    assert policy.decide(feats(entropy=0.59)) is Decision.CONTINUE
    assert policy.decide(feats(entropy=0.61)) is Decision.STOP  # kept, then verify
    assert policy.decide(deterministic_features(1, 0)) is Decision.CONTINUE


def test_svip_boundary_follows_its_parameters():
    policy = SvipPolicy(h=0.5, gamma_s=0.25, max_draft=3)  # h**2 / gamma_s = 1.0 nats
    assert policy.begin_round(STATE) == 3
    assert policy.decide(feats(entropy=0.99)) is Decision.CONTINUE
    assert policy.decide(feats(entropy=1.01)) is Decision.STOP
