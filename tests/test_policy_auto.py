"""The cost-aware (auto) policy: its cost model, measurements and exploration."""

from __future__ import annotations

import math

import attrs
import pytest

from specdec import Decision, RoundState
from specdec.features import TokenFeatures
from specdec.strategies.policies import CostAwarePolicy
from specdec.strategies.policies.auto.costs import STALE_CALLS
from tests.policy_helpers import STATE, feats, verdict


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
    forwards = len(decisions)  # a draft model forwards once per position it looks at
    policy.observe(verdict(drafted, min(accepted, drafted), draft=draft * forwards, verify=verify, forwards=forwards))
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
        policy.observe(verdict(1 if budgets[-1] else 0, 0, forwards=1 if budgets[-1] else 0))
    assert budgets.index(4) == 20 and budgets.count(4) == 1


def test_cost_aware_weighs_the_drafts_catch_up_on_a_long_prompt_against_the_rounds_left():
    policy = CostAwarePolicy(measure=False, draft_cost=0.1, width_cost=0.05, catchup_cost=0.005, explore_share=0.0)
    policy.start()
    # a new prompt's first round is only ever an exploration (none here: explore_share 0)
    short = RoundState(context_length=3, generated=0, remaining=10, pending=3)
    assert model_budget(policy, short) == 0
    # a0 = .5: a round gains .5 - .1 - .05 = .35 over about 10 / 1.5 rounds = 2.33 in all, less than
    # reading a 2,000-token prompt first (.005 * 1,999 = 10.0); a 3-token prompt costs .01
    assert model_budget(policy, RoundState(context_length=2000, generated=0, remaining=10, pending=2000)) == 0
    assert model_budget(policy, short) == 16
    # with 1,000 tokens left the long prompt would pay (.35 * 666.7 = 233 > 10), but a0 is not yet
    # this call's own: reading 64+ unread tokens waits for a verified draft of this call
    long = RoundState(context_length=2000, generated=0, remaining=1000, pending=2000)
    assert model_budget(policy, long) == 0
    policy.observe(verdict(0, 0))
    assert model_budget(policy, short) == 16
    assert policy.should_draft(feats(prob=0.97))  # the draft model ran and drafted a token
    policy.observe(verdict(1, 1, context=3, forwards=1))  # a short read paid off once
    assert model_budget(policy, long) == 16
    policy.start()  # a new call: its own evidence again
    policy.observe(verdict(0, 0))
    assert model_budget(policy, long) == 0


def test_cost_aware_drafts_when_the_draft_is_cheap_and_accepted():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8)
    assert model_budget(policy, STATE) == 8
    # decile .9-1 has prior .95: .95 * 1 > .1 (draft it), .95**2 > .05 + .1 (continue)
    assert drive(policy, [0.97, 0.97, 0.01], 0)[1] == [Decision.CONTINUE, Decision.CONTINUE, None]
    # ... and decile 0-.1 has prior .05: .95**2 * .05 is below its verify increment .1: not drafted
    # decile .3-.4 (prior .35) is worth drafting (.35 > .1) but not continuing after (.35**2 < .15)
    assert drive(policy, [0.35, 0.97], 0)[1] == [Decision.STOP]


def test_cost_aware_counts_a_declined_first_token_as_a_miss():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8, explore_share=0.0)
    policy.start()
    assert model_budget(policy, STATE) == 0  # a new prompt's first round: no exploration budget here
    policy.observe(verdict(0, 0))
    before = policy.first_acceptance()
    # the draft ran (its top-1 .01 is in the decile with prior .05 < the .1 increment) but proposed nothing
    budget = model_budget(policy, STATE)
    features = feats(prob=0.01, position=0)
    assert budget == 8 and not policy.should_draft(features)
    policy.observe(verdict(0, 0, context=40, forwards=1))
    # a round in which the draft ran and gained nothing: a0 (which prices such rounds) goes down
    assert policy.first_acceptance() < before


def test_cost_aware_takes_a_predictors_score_after_the_draw_and_calibrates_it():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8)
    model_budget(policy, STATE)
    features = feats(prob=0.97, position=0)
    assert policy.should_draft(features)
    # top-1 decile prior .95 would continue (.95**2 > .05 + .1); the predictor's .15 (decile prior
    # .15) replaces it: .15**2 < .15, stop
    assert policy.decide_scored(features, 0.15) is Decision.STOP
    model_budget(policy, STATE)
    assert policy.should_draft(features)
    assert policy.decide(features) is Decision.CONTINUE  # no score: the top-1 decile
    policy.observe(verdict(1, 1, forwards=1))
    # a predictor that says .95 but whose tokens are always rejected is recalibrated from outcomes;
    # the top-1 decile it replaced learns nothing from those rounds (the first token, from another
    # decile, is accepted, so that the draft keeps running)
    lead, scored = feats(prob=0.55, position=0), feats(prob=0.97, position=1)
    before = policy.acceptance(scored)
    for _ in range(30):
        assert model_budget(policy, STATE)
        assert policy.should_draft(lead) and policy.decide(lead) is Decision.CONTINUE
        assert policy.should_draft(scored)
        policy.decide_scored(scored, 0.95)
        policy.observe(verdict(2, 1, forwards=2))
    assert model_budget(policy, STATE)
    assert policy.should_draft(lead) and policy.decide(lead) is Decision.CONTINUE
    assert policy.should_draft(scored)
    assert policy.acceptance(scored) == pytest.approx(before)
    assert policy.decide_scored(scored, 0.95) is Decision.STOP
    # deterministic tokens keep their own bucket (prior .9 here): a score is not applied to them
    fresh = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.9, max_draft=8)
    fresh.begin_round(STATE)
    lookup = TokenFeatures(position=0, token=3, prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
    assert fresh.decide_scored(lookup, 0.0) is Decision.CONTINUE


def test_cost_aware_does_not_record_a_declined_position_so_another_proposal_can_take_it():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, prior_acceptance=0.05, max_draft=8, explore_share=0.0)
    policy.start()
    policy.observe(verdict(0, 0))  # past the new prompt's first round
    # a0 + one standard error = .05 + .22 pays for D + V(2) - V(1) = .15
    assert model_budget(policy, STATE) == 8
    copy = TokenFeatures(position=0, token=3, prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
    assert not policy.should_draft(copy)  # a copy at prior .05 is below its .1 verify increment
    model = feats(prob=0.97, position=0)
    assert policy.should_draft(model) and policy.decide(model) is Decision.CONTINUE  # the draft's own token
    policy.observe(verdict(1, 1, forwards=1))
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
    assert policy.acceptance(copy) < 0.1  # ... the copies' own bucket learned they do not pay
    policy.begin_round(STATE)
    assert not policy.should_draft(copy)  # declined: the draft model's token takes the position
    model = feats(prob=0.97, position=0)
    assert policy.should_draft(model)
    policy.decide(model)
    policy.observe(verdict(1, 0, forwards=1))
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
                policy.observe(verdict(1, 0, forwards=1))  # every first token rejected
            else:
                policy.observe(verdict(0, 0))
    # costs D + V(2) - V(1) = .19 + .05 = .24. a0 after m misses: .5 / (m + 1).
    # Without optimism: .5, .25, then .167 -> drafting stops after the second miss.
    assert budgets[0.0] == [16] * 2 + [0] * 10
    # With it, a0 + sqrt(a0 (1 - a0) / (m + 1)): 1.0, .556, .382, .290, then .234 < .24:
    # four rounds drafted, then off for good.
    assert budgets[1.0] == [16] * 4 + [0] * 8
    assert hopeful.first_acceptance_bound() == pytest.approx(0.1 + math.sqrt(0.1 * 0.9 / 5), rel=1e-2)


def test_cost_aware_opens_rounds_to_copies_when_the_draft_may_not_run_and_explores_them():
    policy = CostAwarePolicy(measure=False, draft_cost=0.05, width_cost=0.1, catchup_cost=0.05, explore_share=0.0)
    policy.start()
    long = RoundState(context_length=2000, generated=70, remaining=100, pending=2000)
    copy = TokenFeatures(position=0, token=3, prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
    # 2,000 unread tokens and no budget to explore them: no draft-model forward; a copy needs none,
    # and at the prior .5 it pays for its verify increment (.1)
    assert policy.begin_round(long) == 16 and not policy.allows_forward(0)
    assert policy.should_draft(copy) and policy.decide(copy) is Decision.CONTINUE  # .5 * .5 > .1
    policy.observe(verdict(1, 1, context=2000))
    # a copy is no evidence about the draft model: a0 and the long-read evidence stay
    assert policy.first_acceptance() == 0.5 and policy._verified_rounds == 0
    rejected = 0
    while policy.begin_round(long) and rejected < 50:  # then the target rejects the copies ...
        assert policy.should_draft(copy)
        policy.decide(copy)
        policy.observe(verdict(1, 0, context=2000))
        rejected += 1
    # ... until their bucket prices them out: (1 + .5) / (n + 2) <= .1 after 13
    assert rejected == 13 and policy.acceptance(copy) <= 0.1
    # idle steps earn exploration budget (here .15 of a step each): one buys a forced copy (.1)
    policy.explore_share = 0.15
    policy.observe(verdict(0, 0))
    assert policy.begin_round(long) == 16 and not policy.allows_forward(0)
    assert policy.should_draft(copy)  # explored whatever its estimate
    assert policy.exploration.credit == pytest.approx(0.15 - 0.1)
    policy.observe(verdict(1, 0, context=2000))
    # a proposer that runs its model without asking allows_forward: its tokens are refused
    assert policy.begin_round(long) == 0
    assert not policy.should_draft(feats(prob=0.97))


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
    generated = rounds_with_draft = read = 0  # read: context tokens the draft model has read
    while generated < tokens:
        context = prompt + generated
        state = RoundState(context_length=context, generated=generated, remaining=tokens - generated, pending=context - read)
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
        policy.observe(verdict(drafted, kept, draft=draft * asked, verify=verify, context=context, forwards=asked))
        if asked:  # the draft read the context and its kept tokens but the last (cropped at a rejection)
            read = context + max(min(kept, drafted - 1), 0)
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
