"""Each length policy's decision rule and adaptation, on hand-computed cases."""

from __future__ import annotations

import math

import attrs
import pytest

from specdec import ConfigurationError, Decision, Decoder, DraftFeatures, RoundState, Verification
from specdec.features import TokenFeatures, deterministic_features
from specdec.integrations.toy import ToyModel
from specdec.plugins import registry
from specdec.strategies.policies import (
    AdaEdlPolicy,
    ConfidencePolicy,
    CostAwarePolicy,
    HeuristicPolicy,
    OraclePolicy,
    SvipPolicy,
)
from specdec.strategies.policies.confidence import roc_threshold
from specdec.strategies.policies.cost_aware import STALE_CALLS
from specdec.strategies.proposers import DraftModelProposer

STATE = RoundState(context_length=3, generated=0, remaining=100)


def feats(prob: float = 0.5, entropy: float = 0.5, position: int = 0, token: int = 0) -> TokenFeatures:
    return TokenFeatures(position=position, token=token, prob=prob, entropy=entropy, margin=0.0)


def verdict(drafted: int, accepted: int, *, draft: float = 0.0, verify: float = 0.0, context: int = 0) -> Verification:
    tokens = tuple(range(min(accepted + 1, drafted + 1)))
    return Verification(drafted, accepted, tokens, draft_seconds=draft, verify_seconds=verify, context_length=context)


# ----------------------------------------------------------------------------- heuristic
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


# ----------------------------------------------------------------------------- SVIP
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


# ----------------------------------------------------------------------------- AdaEDL
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


# ----------------------------------------------------------------------------- confidence
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


# ----------------------------------------------------------------------------- cost-aware
def model_budget(policy, state: RoundState) -> int:
    """begin_round as a draft-model proposer sees it: the cap if the policy lets the model run, else 0
    (a round open to copies and lookups only)."""
    budget = policy.begin_round(state)
    return budget if budget and policy.allows_forward(0) else 0


def drive(policy, probs: list[float], accepted: int, *, draft: float = 0.0, verify: float = 0.0):
    """One round as a draft-model proposer runs it, with draft top-1 probabilities `probs`:
    (the model's budget, decisions): 0 when the policy refuses the model's first forward.

    A position the policy declines before the draw is recorded as None.
    """
    budget = model_budget(policy, STATE)
    decisions: list[Decision | None] = []
    for i, p in enumerate(probs[:budget]):
        features = feats(prob=p, position=i)
        decisions.append(policy.decide(features) if policy.should_draft(features) else None)
        if decisions[-1] is not Decision.CONTINUE:
            break
    drafted = sum(d is not None for d in decisions)
    policy.observe(verdict(drafted, min(accepted, drafted), draft=draft * len(decisions), verify=verify))
    return budget, decisions


def test_cost_aware_returns_plain_steps_when_drafting_cannot_pay_and_explores_deterministically():
    policy = CostAwarePolicy(measure=False, draft_cost=1.0, prior_acceptance=0.2, catchup_cost=0.0, explore_share=0.05, max_draft=4)
    policy.start()
    # first token: 0.2 accepted * V(1)=1 is less than D=1 + the verify increment .05: never worth it.
    # An exploration costs D + .05 = 1.05; a new prompt grants .05 * 64 tokens = 3.2 up front: three
    rounds = [drive(policy, [0.01, 0.01], 0) for _ in range(6)]
    assert [budget for budget, _ in rounds] == [4, 4, 4, 0, 0, 0]
    # an exploring round keeps its first token whatever it looks like, and then follows the rule
    assert rounds[0][1] == [Decision.STOP]
    # past the first 64 tokens each plain step adds .05: the .05 left + 20 steps pay the next one
    late = RoundState(context_length=80, generated=70, remaining=100)
    budgets = []
    for _ in range(22):
        budgets.append(model_budget(policy, late))
        if budgets[-1]:
            policy.should_draft(feats(prob=0.01))  # the draft model ran (explored)
        policy.observe(verdict(1 if budgets[-1] else 0, 0))
    assert budgets.index(4) == 20 and budgets.count(4) == 1


def test_cost_aware_weighs_the_drafts_catch_up_on_a_long_prompt_against_the_rounds_left():
    policy = CostAwarePolicy(measure=False, draft_cost=0.1, width_cost=0.05, catchup_cost=0.005, explore_share=0.0)
    policy.start()
    # a new prompt's first round is only ever an exploration (none here: explore_share 0)
    assert model_budget(policy, RoundState(context_length=3, generated=0, remaining=10)) == 0
    # a0 = .5: a round gains .5 - .1 - .05 = .35 over about 10 / 1.5 rounds = 2.33 in all, less than
    # reading a 2,000-token prompt first (.005 * 1,999 = 10.0); a 3-token prompt costs .01
    assert model_budget(policy, RoundState(context_length=2000, generated=0, remaining=10)) == 0
    assert model_budget(policy, RoundState(context_length=3, generated=0, remaining=10)) == 16
    # with 1,000 tokens left the long prompt would pay (.35 * 666.7 = 233 > 10), but a0 is not yet
    # this call's own: reading 64+ unread tokens waits for a verified draft of this call
    long = RoundState(context_length=2000, generated=0, remaining=1000)
    assert model_budget(policy, long) == 0
    policy.observe(verdict(0, 0))
    assert model_budget(policy, RoundState(context_length=3, generated=0, remaining=10)) == 16
    assert policy.should_draft(feats(prob=0.97))  # the draft model ran and drafted a token
    policy.observe(verdict(1, 1, context=3))  # a short read paid off once
    assert model_budget(policy, long) == 16
    policy.start()  # a new call: its own evidence again
    policy.observe(verdict(0, 0))
    assert model_budget(policy, long) == 0


def test_cost_aware_weighs_costs_with_a_safety_margin():
    state = RoundState(context_length=3, generated=0, remaining=100)
    decisions = []
    for margin in (0.0, 0.5):
        policy = CostAwarePolicy(measure=False, draft_cost=0.1, width_cost=0.05, prior_acceptance=0.2, catchup_cost=0.0,
                                 explore_share=0.0, margin=margin, optimism=0.0)
        policy.start()
        policy.observe(verdict(0, 0))  # past the new prompt's first round
        decisions.append(model_budget(policy, state))
    # a0 = .2 against D + V(2) - V(1) = .15: worth it at cost, not at 1.5 x cost (.225)
    assert decisions == [16, 0]


def test_cost_aware_keeps_only_a_few_observations_of_acceptance_for_the_next_prompt():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.0, carry=4.0, prior_weight=2.0, max_draft=8)
    policy.start()
    for _ in range(40):
        drive(policy, [0.95], 0)  # every first token rejected in this call
    assert policy.first_acceptance() < 0.05
    policy.start()
    # 40 rejections (discounted) shrink to 4 observations, all rejections: (0 + 2 * .5) / (4 + 2)
    assert policy.first_acceptance() == pytest.approx(1 / 6)


def test_cost_aware_drafts_when_the_draft_is_cheap_and_accepted():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8)
    assert model_budget(policy, STATE) == 8
    # decile .9-1 has prior .95: .95 * 1 > .1 (draft it), .95**2 > .05 + .1 (continue)
    assert drive(policy, [0.97, 0.97, 0.01], 0)[1] == [Decision.CONTINUE, Decision.CONTINUE, None]
    # ... and decile 0-.1 has prior .05: .95**2 * .05 is below its verify increment .1: not drafted
    # decile .3-.4 (prior .35) is worth drafting (.35 > .1) but not continuing after (.35**2 < .15)
    assert drive(policy, [0.35, 0.97], 0)[1] == [Decision.STOP]


def test_cost_aware_counts_a_declined_first_token_as_a_miss_and_the_context_as_read():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8, explore_share=0.0)
    policy.start()
    assert model_budget(policy, STATE) == 0  # a new prompt's first round: no exploration budget here
    policy.observe(verdict(0, 0))
    before = policy.first_acceptance()
    # the draft ran (its top-1 .01 is in the decile with prior .05 < the .1 increment) but proposed nothing
    budget = model_budget(policy, STATE)
    features = feats(prob=0.01, position=0)
    assert budget == 8 and not policy.should_draft(features)
    policy.observe(verdict(0, 0, context=40))
    # a round in which the draft ran and gained nothing: a0 (which prices such rounds) goes down
    assert policy.first_acceptance() < before
    assert policy._synced == 40  # the draft has read the whole context, not one token less


def test_cost_aware_takes_a_predictors_score_after_the_draw_and_calibrates_it():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8)
    model_budget(policy, STATE)
    features = feats(prob=0.97, position=0)
    assert policy.should_draft(features)
    # top-1 decile prior .95 would continue (.95**2 > .05 + .1); the predictor's .15 (decile prior
    # .15) replaces it: .15**2 < .15, stop
    assert policy.decide(features, predicted=0.15) is Decision.STOP
    model_budget(policy, STATE)
    assert policy.decide(feats(prob=0.97, position=0)) is Decision.CONTINUE  # no score: the top-1 decile
    # a predictor that says .95 but whose tokens are always rejected is recalibrated from outcomes;
    # the top-1 decile it replaced learns nothing from those rounds
    for _ in range(30):
        model_budget(policy, STATE)
        features = feats(prob=0.97, position=0)
        policy.should_draft(features)
        policy.decide(features, predicted=0.95)
        policy.observe(verdict(1, 0))
    policy.begin_round(STATE)
    features = feats(prob=0.97, position=0)
    assert policy.acceptance(features) == pytest.approx(0.95)
    assert policy.decide(features, predicted=0.95) is Decision.STOP
    # deterministic tokens keep their own bucket (prior .9 here): a score is not applied to them
    fresh = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8)
    fresh.begin_round(STATE)
    lookup = TokenFeatures(position=0, token=3, prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
    assert fresh.decide(lookup, predicted=0.0) is Decision.CONTINUE


def test_cost_aware_does_not_record_a_declined_position_so_another_proposal_can_take_it():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.05, max_draft=8, explore_share=0.0)
    policy.start()
    policy.observe(verdict(0, 0))  # past the new prompt's first round
    # a0 + one standard error = .05 + .22 pays for D + V(2) - V(1) = .15 (.17 with the margin)
    assert model_budget(policy, STATE) == 8
    copy = TokenFeatures(position=0, token=3, prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
    assert not policy.should_draft(copy)  # a copy at prior .05 is below its .1 verify increment
    model = feats(prob=0.97, position=0)
    assert policy.should_draft(model) and policy.decide(model) is Decision.CONTINUE  # the draft's own token
    policy.observe(verdict(1, 1))
    # the outcome went to the draft's decile (.95 prior, one more hit), not to the declined copy's
    assert policy.acceptance(feats(prob=0.97)) == pytest.approx((1 + 0.95) / 2)
    assert policy.acceptance(copy) == pytest.approx(0.05)


def test_cost_aware_prices_a_round_by_the_draft_models_first_token_not_by_a_copys():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8, explore_share=0.0)
    copy = TokenFeatures(position=0, token=3, prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
    before = policy.first_acceptance()
    for _ in range(10):  # rounds led by a copy that the target rejects (then declined: no draft at all)
        policy.begin_round(STATE)
        if policy.should_draft(copy):
            policy.decide(copy)
            policy.observe(verdict(1, 0))
        else:
            policy.observe(verdict(0, 0))
    assert policy.first_acceptance() == before  # a0 (the draft model's first token) is untouched ...
    assert policy.acceptance(copy) < 0.115  # ... the copies' own bucket learned they do not pay
    policy.begin_round(STATE)
    assert not policy.should_draft(copy)  # declined: the draft model's token takes the position
    model = feats(prob=0.97, position=0)
    assert policy.should_draft(model)
    policy.decide(model)
    policy.observe(verdict(1, 0))
    assert policy.first_acceptance() < before  # that round was the draft model's, and it missed


def test_cost_aware_bets_on_an_optimistic_first_token_rate_while_it_has_few_observations():
    """A call that starts with a few misses keeps drafting a little longer; a draft that keeps
    missing is still switched off."""
    def policy_with(optimism: float) -> CostAwarePolicy:
        policy = CostAwarePolicy(measure=False, draft_cost=0.19, width_cost=0.05, explore_share=0.0, optimism=optimism)
        policy.start()
        policy.observe(verdict(0, 0))  # past the new prompt's first round
        return policy

    plain, hopeful = policy_with(0.0), policy_with(1.0)
    budgets = {0.0: [], 1.0: []}
    for policy, z in ((plain, 0.0), (hopeful, 1.0)):
        for _ in range(12):
            budget = model_budget(policy, STATE)
            budgets[z].append(budget)
            if budget:
                policy.should_draft(feats(prob=0.5))
                policy.decide(feats(prob=0.5))
                policy.observe(verdict(1, 0))  # every first token rejected
            else:
                policy.observe(verdict(0, 0))
    # costs D + V(2) - V(1) = .19 + .05, with the 15% margin .276. a0 after m misses: .5 / (m + 1).
    # Without optimism: .5, then .25 -> drafting stops after the first miss.
    assert budgets[0.0] == [16] + [0] * 11
    # With it, a0 + sqrt(a0 (1 - a0) / (m + 1)): 1.0, .556, .382, .290, then .234 < .276:
    # four rounds drafted, then off for good.
    assert budgets[1.0] == [16] * 4 + [0] * 8
    assert hopeful.first_acceptance_bound() == pytest.approx(0.1 + math.sqrt(0.1 * 0.9 / 5), rel=1e-2)


def test_cost_aware_opens_rounds_to_copies_when_the_draft_may_not_run_and_explores_them():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, catchup_cost=0.05, explore_share=0.0)
    policy.start()
    long = RoundState(context_length=2000, generated=70, remaining=100)
    copy = TokenFeatures(position=0, token=3, prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
    # 2,000 unread tokens and no budget to explore them: no draft-model forward; a copy needs none,
    # and at the prior .5 it pays for its verify increment (.1, with the margin .115)
    assert policy.begin_round(long) == 16 and not policy.allows_forward(0)
    assert policy.should_draft(copy) and policy.decide(copy) is Decision.CONTINUE  # .5 * .5 > .115
    policy.observe(verdict(1, 1, context=2000))
    # a copy is no evidence about the draft model: a0, what it has read, the long-read evidence stay
    assert policy.first_acceptance() == 0.5 and policy._synced == 0 and policy._verified_rounds == 0
    rejected = 0
    while policy.begin_round(long) and rejected < 50:  # then the target rejects the copies ...
        assert policy.should_draft(copy)
        policy.decide(copy)
        policy.observe(verdict(1, 0, context=2000))
        rejected += 1
    # ... until their bucket prices them out: (1 + .5) / (n + 2) < .115 after about 11
    assert 10 <= rejected <= 12 and policy.acceptance(copy) < 0.115
    # idle steps earn exploration budget (here .15 of a step each): one buys a forced copy (.1)
    policy.explore_share = 0.15
    policy.observe(verdict(0, 0))
    assert policy.begin_round(long) == 16 and not policy.allows_forward(0)
    assert policy.should_draft(copy)  # explored whatever its estimate
    assert policy._credit == pytest.approx(0.15 - 0.1)
    policy.observe(verdict(1, 0, context=2000))
    # a proposer that runs its model without asking allows_forward: its tokens are refused
    assert policy.begin_round(long) == 0
    assert not policy.should_draft(feats(prob=0.97))


def test_cost_aware_returns_an_exploration_that_never_reached_the_draft_model():
    """A round explored for the draft model can end within a copy (the policy stops it there):
    the model never ran, so the budget is returned and the next round explores again."""
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, catchup_cost=0.001, explore_share=0.05)
    policy.start()
    copy = TokenFeatures(position=0, token=3, prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
    explore = 0.05 + 0.001 * 199 + 0.1  # draft step + reading 200 tokens + verify increment
    assert policy.begin_round(RoundState(context_length=200, generated=0, remaining=100)) == 16
    assert policy.allows_forward(0) and policy._credit == pytest.approx(0.05 * 64 - explore)
    assert policy.should_draft(copy)
    policy.observe(verdict(1, 1, context=200))  # the round ended within the copy
    assert policy._credit == pytest.approx(0.05 * 64) and policy._verified_rounds == 0
    state = RoundState(context_length=202, generated=2, remaining=98)
    assert policy.begin_round(state) == 16 and policy.allows_forward(0)  # explored again
    assert policy.should_draft(feats(prob=0.97))  # this time the draft model ran
    policy.observe(verdict(1, 1, context=202))
    assert policy._verified_rounds == 1 and policy._credit == pytest.approx(0.05 * 64 - (explore + 0.002))  # 202 read


def test_cost_aware_learns_acceptance_from_outcomes():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.0, max_draft=8, optimism=0.0)
    assert policy.acceptance(feats(prob=0.95)) == pytest.approx(0.95)
    for _ in range(40):
        drive(policy, [0.95, 0.95, 0.95], 0)  # confident drafts that are always rejected
    assert policy.acceptance(feats(prob=0.95)) < 0.1
    assert policy.first_acceptance() < 0.1
    assert model_budget(policy, STATE) == 0


def test_cost_aware_measures_costs_and_stops_speculating_when_it_is_slower():
    policy = CostAwarePolicy(explore_share=0.0)
    policy.start()
    policy.observe(verdict(0, 0, verify=5.0))  # the first round prefills the prompt: not a step cost
    policy.observe(verdict(0, 0, verify=0.010))
    assert policy.target_step() == pytest.approx(0.010)
    assert policy.verify_cost(3) == pytest.approx(0.010 * (1 + 2 * 0.05))  # prior slope until measured
    budgets = []
    for _ in range(12):  # a draft step costs two target steps: no acceptance rate can pay for it
        budgets.append(drive(policy, [0.95] * 16, accepted=1, draft=0.020, verify=0.011)[0])
    assert policy.draft_step() == pytest.approx(0.020)
    assert budgets[0] == 16 and budgets[-1] == 0


def generate_call(policy, *, draft: float, accepted: int, tokens: int = 64, prompt: int = 60) -> int:
    """One generate call as the decoder runs it: a `prompt`-token prompt, then rounds in which the
    draft model proposes confident tokens (`draft` seconds a position looked at), the first
    `accepted` of them accepted; target steps cost 10 ms (the first round, the prefill, 0.5 s).
    Returns the rounds in which the draft model ran."""
    policy.start()
    generated = rounds_with_draft = 0
    while generated < tokens:
        state = RoundState(context_length=prompt + generated, generated=generated, remaining=tokens - generated)
        budget = policy.begin_round(state)
        asked = drafted = 0
        if budget and policy.allows_forward(0):
            for i in range(min(budget, tokens - generated - 1)):
                asked += 1
                features = feats(prob=0.95, position=i)
                if not policy.should_draft(features):
                    break
                drafted += 1
                if policy.decide(features) is not Decision.CONTINUE:
                    break
        rounds_with_draft += drafted > 0
        kept = min(accepted, drafted)
        verify = 0.5 if generated == 0 else 0.010 * (1 + 0.02 * drafted)
        policy.observe(verdict(drafted, kept, draft=draft * asked, verify=verify, context=prompt + generated))
        generated += kept + 1
    return rounds_with_draft


def test_cost_aware_drafts_again_after_a_slow_stretch_priced_the_draft_out():
    """A slow stretch of the machine (here: draft steps at 1.5 target steps for two calls) stops
    drafting, and then nothing re-measures the draft step: its stale price fades back to the
    prior over STALE_CALLS calls, so an exploration becomes affordable and measures it again."""
    policy = CostAwarePolicy()
    assert generate_call(policy, draft=0.001, accepted=16) > 0
    for _ in range(2):
        generate_call(policy, draft=0.015, accepted=2)
    assert generate_call(policy, draft=0.001, accepted=16) == 0  # priced out: not even explored
    resumed = [generate_call(policy, draft=0.001, accepted=16) > 0 for _ in range(STALE_CALLS + 2)]
    assert any(resumed[: STALE_CALLS + 1]) and resumed[-1]
    assert policy.draft_step() == pytest.approx(0.001)


def test_cost_aware_a_width_no_longer_verified_fades_back_to_the_prior_slope():
    policy = CostAwarePolicy(explore_share=0.0)
    policy.start()
    policy.observe(verdict(0, 0, verify=5.0))
    for _ in range(3):
        policy.observe(verdict(0, 0, verify=0.010))
        policy.observe(verdict(4, 4, verify=0.030))  # width 5 at three steps: a slow stretch
    policy.start()
    assert policy.verify_cost(5) == pytest.approx(0.030)  # the shape measured: 3.0
    policy.start()  # a call that verified nothing at width 5: a third of the way to 1 + 4 * 0.05
    assert policy.verify_cost(5) == pytest.approx(0.010 * (3.0 + (1.2 - 3.0) / STALE_CALLS))
    assert policy.verify_cost(1) == pytest.approx(0.010)


def test_cost_aware_times_a_forward_by_its_real_width_branches_included():
    policy = CostAwarePolicy(explore_share=0.0)
    policy.start()
    policy.observe(verdict(0, 0, verify=5.0))  # prefill: not timed
    policy.observe(verdict(0, 0, verify=0.010))
    for _ in range(3):  # one draft token and a 3-token branch: the target processed 5 tokens
        policy.observe(attrs.evolve(verdict(1, 1, verify=0.030), tree_argmax=(0, 0, 0)))
    assert policy.verify_cost(5) == pytest.approx(0.030)
    assert policy.verify_cost(2) == pytest.approx(0.010 * 1.05)  # still the prior shape: not measured


def test_cost_aware_re_measures_verify_costs_per_call_keeping_their_shape():
    policy = CostAwarePolicy(explore_share=0.0)
    policy.start()
    policy.observe(verdict(0, 0, verify=5.0))  # prefill: not timed
    policy.observe(verdict(0, 0, verify=0.010))
    policy.observe(verdict(3, 3, verify=0.020))
    # fewer than three timings of a width are padded with its prior shape (1 + 3 * .05) * V(1),
    # also in a first call, and the lower quartile is taken: slow forwards cannot price a width
    # out before it is measured again
    assert policy.verify_cost(4) == pytest.approx(0.0115)
    policy.observe(verdict(3, 3, verify=0.020))
    assert policy.verify_cost(4) == pytest.approx(0.0115)
    policy.observe(verdict(3, 3, verify=0.020))
    assert policy.verify_cost(4) == pytest.approx(0.020)  # three timings: the measurement alone
    policy.start()  # a longer prompt: every forward costs three times as much
    assert policy.target_step() == pytest.approx(0.010) and policy.verify_cost(4) == pytest.approx(0.020)
    policy.observe(verdict(0, 0, verify=5.0))
    for _ in range(2):
        policy.observe(verdict(0, 0, verify=0.030))
        assert policy.target_step() == pytest.approx(0.010)  # padded with the old estimate
    policy.observe(verdict(0, 0, verify=0.030))
    assert policy.target_step() == pytest.approx(0.030)  # three timings: the new cost
    assert policy.verify_cost(4) == pytest.approx(0.060)  # the ratio 2 measured before, until re-measured
    assert policy.verify_cost(3) == pytest.approx(0.030 * (1 + 2 * 0.05))  # never measured: the prior slope


def test_cost_aware_summarises_timings_by_their_lower_quartile():
    """Interference only adds time: a burst of slow forwards must not price drafting out."""
    policy = CostAwarePolicy(explore_share=0.0)
    policy.start()
    policy.observe(verdict(0, 0, verify=5.0))
    for seconds in (0.010, 0.030, 0.011, 0.029, 0.010, 0.028, 0.012, 0.031, 0.010):  # nine, four of them in bursts
        policy.observe(verdict(0, 0, verify=seconds))
    assert policy.target_step() == pytest.approx(0.010)  # sorted, index int(.25 * 8) = 2: .010 (median: .012)
    # a mostly slow window is still what it costs
    for seconds in (0.030,) * 7:
        policy.observe(verdict(0, 0, verify=seconds))
    assert policy.target_step() == pytest.approx(0.030)


def test_cost_aware_keeps_drafting_with_a_cheap_accurate_draft():
    policy = CostAwarePolicy(explore_share=0.0)
    policy.start()
    policy.observe(verdict(0, 0, verify=5.0))
    policy.observe(verdict(0, 0, verify=0.010))
    for _ in range(12):
        budget, decisions = drive(policy, [0.95] * 16, accepted=16, draft=0.001, verify=0.011)
        assert budget == 16
    assert decisions == [Decision.CONTINUE] * 16
    assert policy.draft_step() == pytest.approx(0.001)


# ----------------------------------------------------------------------------- oracle
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


# ----------------------------------------------------------------------------- parameters
NAN = math.nan
BAD_PARAMETERS = [
    (HeuristicPolicy, {"k": 0}),
    (HeuristicPolicy, {"max_draft": 0}),
    (HeuristicPolicy, {"persist": "no"}),
    (SvipPolicy, {"h": -0.1}),
    (SvipPolicy, {"h": NAN}),
    (SvipPolicy, {"gamma_s": 0.0}),
    (SvipPolicy, {"gamma_s": math.inf}),
    (SvipPolicy, {"max_draft": 0}),
    (ConfidencePolicy, {"threshold": -0.1}),
    (ConfidencePolicy, {"threshold": NAN}),
    (ConfidencePolicy, {"threshold": 1.5}),
    (ConfidencePolicy, {"max_draft": 0}),
    (ConfidencePolicy, {"history": 5}),
    (AdaEdlPolicy, {"gamma": -0.2}),
    (AdaEdlPolicy, {"gamma": NAN}),
    (AdaEdlPolicy, {"initial_lambda": NAN}),
    (AdaEdlPolicy, {"initial_lambda": -0.5}),
    (AdaEdlPolicy, {"beta2": 1.5}),
    (AdaEdlPolicy, {"eps": -0.01}),
    (AdaEdlPolicy, {"min_draft": -1}),
    (AdaEdlPolicy, {"max_draft": 0}),
    (CostAwarePolicy, {"draft_cost": -1.0}),
    (CostAwarePolicy, {"draft_cost": NAN}),
    (CostAwarePolicy, {"width_cost": -0.1}),
    (CostAwarePolicy, {"prior_acceptance": 1.5}),
    (CostAwarePolicy, {"prior_weight": 0.0}),
    (CostAwarePolicy, {"explore_share": 1.5}),
    (CostAwarePolicy, {"carry": -1.0}),
    (CostAwarePolicy, {"margin": math.inf}),
    (CostAwarePolicy, {"optimism": -1.0}),
    (CostAwarePolicy, {"catchup_cost": math.nan}),
    (CostAwarePolicy, {"max_draft": 0}),
    (OraclePolicy, {"max_draft": 0}),
    (OraclePolicy, {"continuation": [1, -2]}),
    (OraclePolicy, {"continuation": [1, 2.5]}),
]


@pytest.mark.parametrize("cls,kwargs", BAD_PARAMETERS, ids=lambda x: getattr(x, "__name__", None) or str(x))
def test_bad_parameters_are_configuration_errors(cls, kwargs):
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        cls(**kwargs)


@pytest.mark.parametrize(
    "name,params", [("svip", {"h": "nan"}), ("adaedl", {"max_draft": "0"}), ("confidence", {"threshold": "-1"})]
)
def test_bad_command_line_parameters_are_configuration_errors(name, params):
    with pytest.raises(ConfigurationError):
        registry().build("policy", name, params)


@pytest.mark.parametrize("name", [n for n in registry().names("policy") if n != "fixed"])
def test_every_new_policy_has_a_hard_cap_and_documents_itself(name):
    cls = registry().get("policy", name).cls
    assert cls.name == name and "max_draft" in (cls.__doc__ or "")
    fields = {f.name: f for f in attrs.fields(cls)}
    assert "max_draft" in fields and fields["max_draft"].init
    with pytest.raises(ConfigurationError):
        cls(max_draft=0)
    policy = cls(max_draft=3, **({"continuation": list(range(100))} if name == "oracle" else {}))
    policy.start()
    assert 0 <= policy.begin_round(STATE) <= 3
