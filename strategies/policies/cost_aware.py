"""Cost-aware drafting ("auto"): draft a token only while its expected saving exceeds its cost."""

from __future__ import annotations

import math
import statistics
from collections import deque

import attrs

from specdec.features import DraftFeatures, TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, boolean, finite_in, positive_int
from specdec.verification import Verification

PROB_BUCKETS = 10  # acceptance is calibrated per decile of the draft's top-1 probability, plus deterministic tokens
TIMING_WINDOW = 9  # timings kept per verify width (and for the draft step); their median is used


@attrs.define
class CostAwarePolicy(PolicyBase):
    """Our design (docs/algorithms.md has no source for it): speculate only where it pays.

    Cost model, measured online from each round's `Verification` (`measure=True`):
      - D: one draft step = median over recent rounds of draft_seconds / draft forwards (one per
        draft position looked at, i.e. per `should_draft` call);
      - V(w): one target forward over w tokens = median of the recent verify_seconds of rounds
        that verified w - 1 draft tokens (plain target steps give V(1)). A width never measured is
        extrapolated from the nearest measured one with the prior slope `width_cost` * V(1).
    Priors, in units of V(1), stand in until measured: D = `draft_cost` * V(1),
    V(w) = V(1) * (1 + `width_cost` * (w - 1)). `measure=False` uses the priors only, so that runs
    are reproducible regardless of the clock. The first round of each call (prefill) is not timed.

    Acceptance model: the conditional acceptance a of a draft position is the discounted frequency
    of accepted outcomes in the decile of the draft's top-1 probability there (deterministic
    proposals have their own bucket), shrunk towards a prior (the decile's midpoint;
    `prior_acceptance` for deterministic proposals) with `prior_weight` pseudo-observations;
    observations are discounted by 1 - 1/`memory`. Outcomes are the drafted tokens up to and
    including the first rejection (later ones were not tested). a depends on the distribution
    only, so leaving a position out never depends on the token drawn there (which would bias
    the output at T > 0).

    Rule. Plain decoding costs V(1) per token. With n tokens already kept this round and P the
    estimated probability that all of them are accepted, position n (its draft step already paid)
    is expected to add P * a accepted tokens, each worth V(1):
      - `should_draft` ends the round without it if P * a * V(1) <= V(n + 2) - V(n + 1), its
        verify increment;
      - once drawn and kept, `decide` STOPs unless the next token, assumed as likely as this
        one, pays for its draft step and verify increment: P * a**2 * V(1) > D + V(n + 3) - V(n + 2).
    `begin_round` returns `max_draft` if a first token is expected to pay (a0 * V(1) > D + V(2) -
    V(1), with a0 the discounted rate of attempted drafts whose first token was kept and accepted,
    prior `prior_acceptance`), else 0: a plain target step. Every kept token's expected saving
    exceeds its marginal cost, so (with calibrated estimates) a round costs less than plain
    decoding of its expected output. So that it keeps learning, after `explore_every` consecutive
    rounds that drafted nothing it drafts one token and keeps it whatever its features.

    No randomness: decisions are a deterministic function of the features and the verifications
    observed (and of their timings when `measure=True`). Estimates persist across `generate`
    calls, since they describe the model pair and the machine.
    """

    name = "auto"
    max_draft: int = attrs.field(default=16, validator=positive_int)
    draft_cost: float = attrs.field(default=0.1, validator=finite_in(0.0, math.inf))
    width_cost: float = attrs.field(default=0.05, validator=finite_in(0.0, math.inf))
    prior_acceptance: float = attrs.field(default=0.5, validator=finite_in(0.0, 1.0))
    prior_weight: float = attrs.field(default=4.0, validator=finite_in(0.0, math.inf, low_open=True))
    memory: int = attrs.field(default=500, validator=positive_int)
    explore_every: int = attrs.field(default=16, validator=positive_int)
    measure: bool = attrs.field(default=True, validator=boolean)
    # learned state
    _hits: list[float] = attrs.field(init=False, repr=False)
    _counts: list[float] = attrs.field(init=False, repr=False)
    _first: list[float] = attrs.field(init=False, repr=False)  # [accepted, rounds] for the first draft token
    _verify: dict[int, deque[float]] = attrs.field(init=False, factory=dict, repr=False)
    _draft: deque[float] = attrs.field(init=False, repr=False)
    _idle: int = attrs.field(init=False, default=0, repr=False)
    # per call / per round
    _untimed: bool = attrs.field(init=False, default=True, repr=False)
    _round: list[int] = attrs.field(init=False, factory=list, repr=False)  # bucket of each draft position
    _survival: float = attrs.field(init=False, default=1.0, repr=False)  # P(all kept tokens are accepted)
    _current: float = attrs.field(init=False, default=1.0, repr=False)  # a at the latest position
    _exploring: bool = attrs.field(init=False, default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._hits = [0.0] * (PROB_BUCKETS + 1)
        self._counts = [0.0] * (PROB_BUCKETS + 1)
        self._first = [0.0, 0.0]
        self._draft = deque(maxlen=TIMING_WINDOW)

    # ------------------------------------------------------------------ estimates
    def acceptance(self, features: DraftFeatures) -> float:
        """Estimated probability that the token drawn here is accepted, given the previous ones were."""
        return self._estimate(self._bucket(features))

    def first_acceptance(self) -> float:
        hits, count = self._first
        return (hits + self.prior_weight * self.prior_acceptance) / (count + self.prior_weight)

    def target_step(self) -> float:
        """V(1): the cost of one plain target step (seconds, or 1.0 before anything is measured)."""
        if 1 in self._verify:
            return statistics.median(self._verify[1])
        if self._verify:
            width = min(self._verify)
            return statistics.median(self._verify[width]) / (1.0 + self.width_cost * (width - 1))
        return 1.0

    def verify_cost(self, width: int) -> float:
        """V(width): one target forward over `width` tokens."""
        if width in self._verify:
            return statistics.median(self._verify[width])
        step = self.target_step()
        if not self._verify:
            return step * (1.0 + self.width_cost * (width - 1))
        below = [w for w in self._verify if w < width]
        nearest = max(below) if below else min(self._verify)
        return max(0.0, statistics.median(self._verify[nearest]) + self.width_cost * step * (width - nearest))

    def draft_step(self) -> float:
        return statistics.median(self._draft) if self._draft else self.draft_cost * self.target_step()

    def _increment(self, kept: int) -> float:
        """Extra verify cost of one more draft token when `kept` are already in the draft."""
        return max(0.0, self.verify_cost(kept + 2) - self.verify_cost(kept + 1))

    # ------------------------------------------------------------------ protocol
    def start(self) -> None:
        self._untimed = True
        self._reset_round()

    def begin_round(self, state: RoundState) -> int:
        self._reset_round()
        if self._idle >= self.explore_every:
            self._exploring = True
            return 1
        if self.first_acceptance() * self.target_step() > self.draft_step() + self._increment(0):
            return self.max_draft
        return 0

    def should_draft(self, features: DraftFeatures) -> bool:
        bucket = self._bucket(features)
        self._round.append(bucket)
        a = self._estimate(bucket)
        if not self._exploring and self._survival * a * self.target_step() <= self._increment(features.position):
            return False
        self._survival *= a
        self._current = a
        return True

    def decide(self, features: TokenFeatures) -> Decision:
        if len(self._round) <= features.position:  # a proposer that does not call should_draft
            self._round.append(self._bucket(features))
            self._current = self._estimate(self._round[-1])
            self._survival *= self._current
        if self._exploring:
            return Decision.STOP
        gain = self._survival * self._current * self.target_step()
        if gain <= self.draft_step() + self._increment(features.position + 1):
            return Decision.STOP
        return Decision.CONTINUE

    def observe(self, verification: Verification) -> None:
        drafted, accepted = verification.drafted, verification.accepted
        if self._untimed:
            self._untimed = False  # the first round of a call also prefills the prompt
        elif self.measure:
            if verification.verify_seconds > 0:
                self._verify.setdefault(drafted + 1, deque(maxlen=TIMING_WINDOW)).append(verification.verify_seconds)
            if self._round and verification.draft_seconds > 0:
                self._draft.append(verification.draft_seconds / len(self._round))
        for i, bucket in enumerate(self._round[: min(drafted, accepted + 1)]):
            self._update(bucket, i < accepted)
        if self._round:  # a draft was attempted: did it yield an accepted token?
            decay = 1.0 - 1.0 / self.memory
            self._first[0] = self._first[0] * decay + (accepted > 0)
            self._first[1] = self._first[1] * decay + 1.0
        self._idle = 0 if drafted > 0 else self._idle + 1
        self._reset_round()

    # ------------------------------------------------------------------ internals
    def _reset_round(self) -> None:
        self._round.clear()
        self._survival = 1.0
        self._current = 1.0
        self._exploring = False

    @staticmethod
    def _bucket(features: DraftFeatures) -> int:
        if features.deterministic:
            return PROB_BUCKETS
        return min(max(int(features.top_prob * PROB_BUCKETS), 0), PROB_BUCKETS - 1)

    def _prior(self, bucket: int) -> float:
        return self.prior_acceptance if bucket == PROB_BUCKETS else (bucket + 0.5) / PROB_BUCKETS

    def _estimate(self, bucket: int) -> float:
        weight = self.prior_weight
        return (self._hits[bucket] + weight * self._prior(bucket)) / (self._counts[bucket] + weight)

    def _update(self, bucket: int, accepted: bool) -> None:
        decay = 1.0 - 1.0 / self.memory
        self._hits[bucket] = self._hits[bucket] * decay + accepted
        self._counts[bucket] = self._counts[bucket] * decay + 1.0
