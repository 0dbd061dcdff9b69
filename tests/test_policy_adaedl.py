"""AdaEDL's entropy bound and its lambda update, on hand-computed cases."""

from __future__ import annotations

import pytest

from specdec import Decision, DraftFeatures
from specdec.strategies.policies import AdaEdlPolicy
from tests.policy_helpers import STATE, feats, verdict


def test_adaedl_stops_before_tokens_above_1_25_nats_at_lambda_one_half():
    policy = AdaEdlPolicy()
    assert policy.begin_round(STATE) == 16
    assert policy.should_draft(DraftFeatures(1, entropy=1.24))
    assert not policy.should_draft(DraftFeatures(1, entropy=1.26))
    assert policy.should_draft(DraftFeatures(0, entropy=5.0))  # min_draft = 1
    assert policy.decide(feats(entropy=5.0, position=1)) is Decision.CONTINUE  # never by the drawn token


def test_adaedl_lambda_update_follows_algorithm_1():
    policy = AdaEdlPolicy()
    policy.observe(verdict(4, 2))  # AR = .5*.9 + .5*.5 = .7 < .9: lambda' = .51, lambda = .9*.5 + .1*.51
    assert policy.acceptance_ema == pytest.approx(0.7)
    assert policy.lam == pytest.approx(0.501)
    policy.observe(verdict(4, 4))  # AR = .85 < .9: lambda' = .511
    assert policy.lam == pytest.approx(0.502)
    policy.observe(verdict(2, 2))  # AR = .925 >= .9 and 2 != 16: lambda' = .492
    assert policy.lam == pytest.approx(0.501)
    policy.observe(verdict(16, 16))  # AR = .9625 and n_a == max_draft: lambda' = lambda
    assert policy.lam == pytest.approx(0.501)
    policy.observe(verdict(0, 0))  # nothing drafted: no update
    assert policy.lam == pytest.approx(0.501) and policy.acceptance_ema == pytest.approx(0.9625)
    # the stricter lambda moves the entropy boundary to (1 - .501)**2 / .2 = 1.245 nats
    assert not policy.should_draft(DraftFeatures(1, entropy=1.2475))
    policy.start()
    assert policy.lam == 0.5 and policy.acceptance_ema == 0.9
    assert policy.should_draft(DraftFeatures(1, entropy=1.2475))
