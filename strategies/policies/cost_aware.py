"""Cost-aware drafting ("auto"): draft a token only while its expected saving exceeds its cost."""

from __future__ import annotations

import math
from collections import deque

import attrs

from specdec.features import DraftFeatures, TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, boolean, finite_in, positive_int
from specdec.verification import Verification

PROB_BUCKETS = 10  # acceptance is calibrated per decile of the draft's top-1 probability, plus deterministic tokens
SCORED = PROB_BUCKETS + 1  # then per decile of an external predictor's score (`decide_scored`, PACER)
BUCKETS = SCORED + PROB_BUCKETS
TIMING_WINDOW = 9
LONG_READ = 64  # unread tokens (a prompt) whose reading by the draft needs this call's own evidence
FRONT = 64  # tokens of a call whose exploration budget is granted up front
QUANTILE = 0.25  # timings are summarised by their lower quartile (see `_typical`)
STALE_CALLS = 3  # a cost not re-measured for this many calls is back at its prior (see `_age_costs`)


@attrs.define
class CostAwarePolicy(PolicyBase):
    """Our design (docs/algorithms.md has no source for it): speculate only where it pays.

    Cost model, measured online from each round's `Verification` (`measure=True`):
      - D: one draft step = lower quartile over recent steady rounds (the draft had at most two tokens to
        catch up on) of draft_seconds / draft-model forwards (`Verification.draft_forwards`);
      - catch-up: before its first token the draft must read every token it has not seen (the
        whole prompt at the start of a call, the tokens of plain steps after an idle stretch), T as
        the proposer reports it (`RoundState.pending`);
        that forward costs D + B * (T - 1) for T tokens, B measured from rounds with T >= 16;
      - V(w): one target forward over w tokens = lower quartile of the recent verify_seconds of rounds
        whose forward processed w tokens in this call (w - 1 draft tokens, or fewer plus branches) (plain target steps give V(1)); they grow
        with the context, so each call re-measures them (padded with the earlier calls' estimate,
        in a first call with the prior shape below, until it has three timings). A width not measured yet is priced as
        V(1) times its ratio V(w) / V(1) in earlier calls (on a CPU a forward over 4 tokens can
        cost far more than over 3), else times 1 + `width_cost` * (w - 1).
    Priors, in units of V(1), stand in until measured: D = `draft_cost` * V(1), B =
    `catchup_cost` * V(1) (B is never estimated below that: reading a long prompt is what it
    guards against, and its cost is underrated by the short reads after idle stretches). `measure=False` uses the priors only, so that runs are reproducible
    regardless of the clock. The first round of each call (prefill) is not timed for the target.

    Acceptance model: the conditional acceptance a of a draft position is the discounted frequency
    of accepted outcomes in the decile of the draft's top-1 probability there (deterministic
    proposals have their own bucket), shrunk towards a prior (the decile's midpoint;
    `prior_acceptance` for deterministic proposals) with `prior_weight` pseudo-observations;
    observations are discounted by 1 - 1/`memory`. A predictor's score for a drawn token
    (`decide_scored(features, predicted)`, PACER's `rule="cost"`) replaces the top-1 decile there by
    the score's own decile, calibrated the same way (prior: its midpoint). Outcomes are the drafted tokens up to and
    including the first rejection (later ones were not tested). a depends on the distribution
    only, so leaving a position out never depends on the token drawn there (which would bias
    the output at T > 0). Acceptance depends on the prompt, so a new call keeps at most `carry`
    observations of each estimate from earlier calls; costs describe the machine and persist.

    Rule. Plain decoding costs V(1) per token. With n tokens already kept this round and P the
    estimated probability that all of them are accepted, position n (its draft step already paid)
    is expected to add P * a accepted tokens, each worth V(1):
      - `should_draft` ends the round without it if P * a * V(1) <= V(n + 2) - V(n + 1), its
        verify increment;
      - once drawn and kept, `decide` STOPs unless the next token, assumed as likely as this
        one, pays for its draft step and verify increment: P * a**2 * V(1) > D + V(n + 3) - V(n + 2).
    Every cost above is weighed with a safety `margin` (15%: an estimated break-even is not worth
    the risk of being slower than plain decoding). `begin_round` drafts (up to `max_draft`) if a
    first token is expected to pay, g = a0+ * V(1) - (D + V(2) - V(1)) > 0, with a0+ = a0 plus
    `optimism` standard errors (`first_acceptance_bound`) and a0 the discounted rate of attempted drafts whose first token was
    accepted (prior `prior_acceptance`; rounds led by a deterministic proposal, priced by their own
    bucket, do not count), and if the catch-up B * (T - 1) is repaid by g over the
    rounds left in the call; else it returns 0, a plain target step. Reading 64 or more unread
    tokens (a prompt) also needs evidence from this call (a verified draft): a0 carried from other
    prompts does not commit the draft to reading a long one. Every kept token's expected
    saving exceeds its marginal cost, so (with calibrated estimates) a round costs less than plain
    decoding of its expected output. So that it keeps learning while idle, it explores (drafts
    the first token whatever its features; later ones by the rule) when `explore_share` of a
    budget covers what one exploration costs (draft step, catch-up, verify increment): the
    budget is the whole call (remaining tokens * V(1)) at a new prompt's first round, since
    acceptance depends on the prompt, and the idle time since the last draft afterwards. So
    exploring spends at most about that share of the time, and a long prompt whose reading
    costs more is not explored at all. A round in which the draft model may not run is still open
    to tokens that need no forward (copies, lookups: `allows_forward` is False for it) when a first
    one, priced by its own bucket, pays for its verify increment; such rounds say nothing about
    the draft model (a0, what it has read, the evidence for reading a long prompt stay as they were).

    No randomness: decisions are a deterministic function of the features and the verifications
    observed (and of their timings when `measure=True`).
    """

    name = "auto"
    max_draft: int = attrs.field(default=16, validator=positive_int)
    draft_cost: float = attrs.field(default=0.25, validator=finite_in(0.0, math.inf))
    width_cost: float = attrs.field(default=0.05, validator=finite_in(0.0, math.inf))
    catchup_cost: float = attrs.field(default=0.005, validator=finite_in(0.0, math.inf))
    prior_acceptance: float = attrs.field(default=0.5, validator=finite_in(0.0, 1.0))
    prior_weight: float = attrs.field(default=1.0, validator=finite_in(0.0, math.inf, low_open=True))
    memory: int = attrs.field(default=500, validator=positive_int)
    carry: float = attrs.field(default=1.0, validator=finite_in(0.0, math.inf))
    margin: float = attrs.field(default=0.15, validator=finite_in(0.0, math.inf))
    explore_share: float = attrs.field(default=0.02, validator=finite_in(0.0, 1.0))
    optimism: float = attrs.field(default=1.0, validator=finite_in(0.0, 10.0))
    measure: bool = attrs.field(default=True, validator=boolean)
    # learned state
    _hits: list[float] = attrs.field(init=False, repr=False)
    _counts: list[float] = attrs.field(init=False, repr=False)
    _first: list[float] = attrs.field(init=False, repr=False)  # [accepted, rounds] for the first draft token
    _verify: dict[int, deque[float]] = attrs.field(init=False, factory=dict, repr=False)
    _draft: deque[float] = attrs.field(init=False, repr=False)
    _catchup: deque[float] = attrs.field(init=False, repr=False)
    _ratios: dict[int, float] = attrs.field(init=False, factory=dict, repr=False)  # V(w) / V(1) of earlier calls
    _step_prior: float = attrs.field(init=False, default=1.0, repr=False)
    _draft_timed: bool = attrs.field(init=False, default=False, repr=False)  # a draft step was timed this call
    # per call / per round
    _untimed: bool = attrs.field(init=False, default=True, repr=False)
    _unread: int = attrs.field(init=False, default=1, repr=False)  # tokens the draft reads first this round (RoundState.pending)
    _credit: float = attrs.field(init=False, default=0.0, repr=False)  # exploration budget left (see begin_round)
    _generated: int = attrs.field(init=False, default=0, repr=False)
    _new_prompt: bool = attrs.field(init=False, default=True, repr=False)
    _verified_rounds: int = attrs.field(init=False, default=0, repr=False)  # rounds of this call with a verified draft
    _round: list[int] = attrs.field(init=False, factory=list, repr=False)  # bucket of each draft position
    _survival: float = attrs.field(init=False, default=1.0, repr=False)  # P(all kept tokens are accepted)
    _current: float = attrs.field(init=False, default=1.0, repr=False)  # a at the latest position
    _exploring: bool = attrs.field(init=False, default=False, repr=False)
    _asked: int = attrs.field(init=False, default=0, repr=False)  # should_draft calls this round (positions looked at)
    _lead_deterministic: bool = attrs.field(init=False, default=False, repr=False)  # the round's first proposal had no distribution
    _model_round: bool = attrs.field(init=False, default=True, repr=False)  # the draft model may run this round
    _explore_spent: float = attrs.field(init=False, default=0.0, repr=False)  # exploration budget spent on this round

    def __attrs_post_init__(self) -> None:
        self._hits = [0.0] * BUCKETS
        self._counts = [0.0] * BUCKETS
        self._first = [0.0, 0.0]
        self._draft = deque(maxlen=TIMING_WINDOW)
        self._catchup = deque(maxlen=TIMING_WINDOW)

    # ------------------------------------------------------------------ estimates
    def acceptance(self, features: DraftFeatures) -> float:
        """Estimated probability that the token drawn here is accepted, given the previous ones were."""
        return self._estimate(self._bucket(features))

    def first_acceptance(self) -> float:
        hits, count = self._first
        return (hits + self.prior_weight * self.prior_acceptance) / (count + self.prior_weight)

    def first_acceptance_bound(self) -> float:
        """a0 plus `optimism` standard errors: what begin_round bets on.

        Stopping the draft stops learning whether it would pay, and a0 rests on few observations
        at the start of a call (the prior and at most `carry` from earlier calls): three misses in
        a row, likely enough at a true rate of one half, used to leave a call plain to its end. The
        bonus shrinks as this call's rounds accumulate, so a draft that keeps missing is still
        switched off, a few rounds later.
        """
        a0 = self.first_acceptance()
        return min(1.0, a0 + self.optimism * math.sqrt(a0 * (1.0 - a0) / (self._first[1] + self.prior_weight)))

    def target_step(self) -> float:
        """V(1): one plain target step (seconds; the last call's until measured; 1.0 before anything is)."""
        prior = self._step_prior if self._ratios else None
        if 1 in self._verify:
            return _typical(self._verify[1], prior)
        if self._verify:
            width = min(self._verify)
            return _typical(self._verify[width]) / self._shape(width)
        return self._step_prior

    def verify_cost(self, width: int) -> float:
        """V(width): one target forward over `width` tokens."""
        if width in self._verify:
            # padded with the shape known so far (earlier calls, else the prior), also in a first call:
            # one slow forward at a width must not price that width out before it is measured again
            prior = self.target_step() * self._shape(width) if width > 1 else None
            return _typical(self._verify[width], prior)
        return self.target_step() * self._shape(width)

    def _shape(self, width: int) -> float:
        """V(width) / V(1) as measured in earlier calls, else the prior (`_prior_shape`)."""
        return self._ratios.get(width, self._prior_shape(width))

    def _prior_shape(self, width: int) -> float:
        """V(width) / V(1) before it is measured: 1 + `width_cost` * (width - 1)."""
        return 1.0 + self.width_cost * (width - 1)

    def draft_step(self) -> float:
        return _typical(self._draft) if self._draft else self.draft_cost * self.target_step()

    def catchup_seconds(self, unread: int) -> float:
        """Extra cost of the draft's first forward when it has `unread` tokens to read, beyond one step."""
        # floored at the prior: reads measured after short idle stretches underrate a long prompt's
        per_token = self.catchup_cost * self.target_step()
        if self._catchup:
            per_token = max(per_token, _typical(self._catchup))
        return per_token * max(unread - 1, 0)

    def _increment(self, kept: int) -> float:
        """Extra verify cost of one more draft token when `kept` are already in the draft."""
        return max(0.0, self.verify_cost(kept + 2) - self.verify_cost(kept + 1))

    # ------------------------------------------------------------------ protocol
    def start(self) -> None:
        self._untimed = True
        self._credit = 0.0
        self._new_prompt = True
        self._verified_rounds = 0
        self._age_costs()
        self._remember_costs()
        self._shrink()
        self._reset_round()

    def begin_round(self, state: RoundState) -> int:
        self._reset_round()
        new_prompt, self._new_prompt = self._new_prompt, False
        self._unread = max(state.pending, 1)
        first = self.first_acceptance_bound()
        setup = self.catchup_seconds(self._unread)
        gain = first * self.target_step() - (1.0 + self.margin) * (self.draft_step() + self._increment(0))
        # a0 carried from other prompts does not commit a new one to reading its prompt: the first
        # round of a call is an exploration, and reading a long stretch (LONG_READ tokens or more)
        # is an investment made only on this call's own evidence (a verified draft) or through
        # the exploration budget, so that a long prompt costs at most that budget when the draft
        # turns out not to agree with the target on it
        evidence = self._verified_rounds > 0 or self._unread < LONG_READ
        if not new_prompt and evidence and gain > 0 and gain * state.remaining / (1.0 + first) > setup:
            return self.max_draft
        if new_prompt:  # a new prompt's exploration budget: a share of its first FRONT tokens
            self._credit += self.explore_share * min(state.remaining, FRONT) * self.target_step()
        self._generated = state.generated
        if self._explore(self.draft_step() + setup + self._increment(0)):
            return self.max_draft
        # no draft-model forward this round; copies and lookups need none (no step, no reading):
        # the round is open to them if a first one would pay (the test should_draft applies), or
        # as an exploration of what costs them only their verify increment, from the same budget
        # (estimates that priced them out, e.g. one slow forward, are otherwise never revisited)
        self._model_round = False
        if self._pays(self._estimate(PROB_BUCKETS), 0) or self._explore(self._increment(0)):
            return self.max_draft
        return 0

    def _explore(self, cost: float) -> bool:
        """Spend `cost` of the exploration budget on this round if the budget covers it."""
        if self._credit < cost:
            return False
        self._credit -= cost
        self._exploring = True
        self._explore_spent = cost
        return True

    def allows_forward(self, position: int) -> bool:
        return self._model_round

    def should_draft(self, features: DraftFeatures) -> bool:
        # a declined position is not recorded: a proposer may offer something else there (a draft
        # model's token where a copy was declined), and outcomes are attributed position by position
        self._asked += 1
        if features.position == 0:  # the last proposal looked at for the first position leads the round
            self._lead_deterministic = features.deterministic
        if not features.deterministic and not self._model_round:
            return False
        bucket = self._bucket(features)
        forced = self._exploring and features.position == 0
        if not forced and not self._pays(self._estimate(bucket), features.position):
            return False
        self._keep(bucket)
        return True

    def _pays(self, a: float, position: int) -> bool:
        """Is a token at `position`, accepted with probability `a` once the kept ones are, worth its verify increment?"""
        return self._survival * a * self.target_step() > (1.0 + self.margin) * self._increment(position)

    def _keep(self, bucket: int) -> None:
        """Record a kept position: its bucket, and its estimate in the round's survival."""
        self._round.append(bucket)
        self._current = self._estimate(bucket)
        self._survival *= self._current

    def decide(self, features: TokenFeatures) -> Decision:
        return self.decide_scored(features, None)

    def decide_scored(self, features: TokenFeatures, predicted: float | None) -> Decision:
        """`decide` with another model's estimate of this token's acceptance (PACER's pre-verifier).

        It replaces the top-1 decile for this position: the estimate becomes the calibrated
        acceptance of its own decile (prior: the decile's midpoint), so a miscalibrated predictor
        still yields calibrated costs. Used after the draw only, where stopping cannot bias.
        """
        if predicted is not None and not features.deterministic:
            bucket = SCORED + _decile(predicted)
            self._round[features.position] = bucket
            a = self._estimate(bucket)
            self._survival = self._survival / self._current * a if self._current > 0 else 0.0
            self._current = a
        gain = self._survival * self._current * self.target_step()
        # the next token's draft step: after a copied or looked-up token the next is one too (the
        # copy runs on) or the proposer asks allows_forward first; in a copy-only round it never is
        step = self.draft_step() if self._model_round and not features.deterministic else 0.0
        if gain <= (1.0 + self.margin) * (step + self._increment(features.position + 1)):
            return Decision.STOP
        return Decision.CONTINUE

    def observe(self, verification: Verification) -> None:
        drafted, accepted = verification.drafted, verification.accepted
        forwarded = verification.draft_forwards > 0  # the draft model ran this round
        if self.measure:
            self._measure(verification)
        self._untimed = False  # the first round of a call also prefills the prompt
        self._new_prompt = False
        self._verified_rounds += drafted > 0 and forwarded  # evidence about the draft model
        if self._model_round and self._explore_spent and not forwarded:
            # an exploration of the draft model that never reached it (the round ended within a
            # copy) has not bought its evidence: the budget is returned and the next round tries again
            self._credit += self._explore_spent
        for i, bucket in enumerate(self._round[: min(drafted, accepted + 1)]):
            self._update(bucket, i < accepted)
        if forwarded:  # the draft model ran: did the round yield an accepted token?
            # A round whose first token was declined counts as a miss: a0 prices a round in which
            # the draft runs (begin_round's gain), and that round paid a draft step for nothing.
            # A round led by a deterministic proposal (a copy, a lookup) says nothing about the
            # draft model's first token: those are priced by their own bucket in should_draft.
            if self._model_round and not self._lead_deterministic:
                decay = 1.0 - 1.0 / self.memory
                self._first[0] = self._first[0] * decay + (accepted > 0)
                self._first[1] = self._first[1] * decay + 1.0
        elif not (self._asked or self._round) and self._generated >= FRONT:  # idle: earns exploration budget
            step = verification.verify_seconds if self.measure and verification.verify_seconds > 0 else self.target_step()
            self._credit += self.explore_share * step
        self._reset_round()

    # ------------------------------------------------------------------ internals
    def _measure(self, verification: Verification) -> None:
        if not self._untimed and verification.verify_seconds > 0:
            # keyed by the forward's real width: a proposer's branches widen it beyond the draft
            self._verify.setdefault(verification.width, deque(maxlen=TIMING_WINDOW)).append(verification.verify_seconds)
        forwards, seconds = verification.draft_forwards, verification.draft_seconds
        if not forwards or seconds <= 0:  # a model-free round times no model
            return
        if self._unread <= 2:
            self._draft.append(seconds / forwards)
            self._draft_timed = True
        elif self._unread >= 16:
            self._catchup.append(max(seconds - forwards * self.draft_step(), 0.0) / (self._unread - 1))

    def _age_costs(self) -> None:
        """Costs that the last call did not re-measure fade back to their priors over STALE_CALLS calls.

        A slow stretch of a shared machine can price the draft step, or a verify width, out; once
        nothing is drafted nothing re-measures them, and exploring must pay for the stale price
        too (with a prompt of a few dozen tokens to read, more than a call's budget). Seen in a
        long benchmark: `auto` with the plain draft stopped drafting for 30 prompts in a row. So
        the draft's oldest timings are dropped (the prior stands in when none are left), and the
        shape of a width not verified moves towards the prior slope, a share per call.
        """
        if not self._draft_timed:
            for _ in range(min(len(self._draft), math.ceil(TIMING_WINDOW / STALE_CALLS))):
                self._draft.popleft()
        self._draft_timed = False
        for width, ratio in self._ratios.items():
            if width not in self._verify:
                self._ratios[width] = ratio + (self._prior_shape(width) - ratio) / STALE_CALLS

    def _remember_costs(self) -> None:
        """Verify costs depend on the context length: a new call re-measures them, keeping their shape."""
        if self._verify:
            step = self.target_step()
            self._ratios.update({w: self.verify_cost(w) / step for w in self._verify if step > 0})
            self._ratios[1] = 1.0
            self._step_prior = step
            self._verify.clear()

    def _shrink(self) -> None:
        """Keep at most `carry` observations of each acceptance estimate for the next prompt."""
        def scale(count: float) -> float:
            return self.carry / count if count > self.carry else 1.0

        factor = scale(self._first[1])
        self._first = [self._first[0] * factor, self._first[1] * factor]
        for b, count in enumerate(self._counts):
            factor = scale(count)
            self._hits[b] *= factor
            self._counts[b] *= factor

    def _reset_round(self) -> None:
        self._asked = 0
        self._lead_deterministic = False
        self._round.clear()
        self._survival = 1.0
        self._current = 1.0
        self._exploring = False
        self._model_round = True
        self._explore_spent = 0.0

    @staticmethod
    def _bucket(features: DraftFeatures) -> int:
        return PROB_BUCKETS if features.deterministic else _decile(features.top_prob)

    def _prior(self, bucket: int) -> float:
        if bucket == PROB_BUCKETS:
            return self.prior_acceptance
        return ((bucket % SCORED) + 0.5) / PROB_BUCKETS

    def _estimate(self, bucket: int) -> float:
        weight = self.prior_weight
        return (self._hits[bucket] + weight * self._prior(bucket)) / (self._counts[bucket] + weight)

    def _update(self, bucket: int, accepted: bool) -> None:
        decay = 1.0 - 1.0 / self.memory
        self._hits[bucket] = self._hits[bucket] * decay + accepted
        self._counts[bucket] = self._counts[bucket] * decay + 1.0


def _decile(probability: float) -> int:
    return min(max(int(probability * PROB_BUCKETS), 0), PROB_BUCKETS - 1)


def _typical(samples: deque[float], prior: float | None = None, weight: int = 3) -> float:
    """What a forward costs, from this call's timings: their lower quartile.

    Interference on a shared CPU (other processes, stolen time) only ever adds time, in bursts;
    the median of a handful of timings of one width then moves by 20-60% with the burst it fell in
    (seen on a 2-core machine), which switched drafting off for whole calls. The lower quartile
    keeps the ratios between widths, which decide what to draft. While there are fewer than
    `weight` timings they are padded with the earlier estimate (`prior`), so that one slow forward
    cannot stop drafting for a whole call (a width that is no longer drafted is never re-measured).
    """
    values = list(samples)
    if prior is not None and len(values) < weight:
        values += [prior] * (weight - len(values))
    values.sort()
    return values[int(QUANTILE * (len(values) - 1))]
