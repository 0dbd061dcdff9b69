"""The decision rule of `auto`: draft a token only while its expected saving exceeds its cost."""

from __future__ import annotations

import math

import attrs

from specdec.features import DraftFeatures, TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, boolean, finite_in, positive_int
from specdec.verification import Verification

from .acceptance import DETERMINISTIC, AcceptanceModel
from .costs import CostModel
from .exploration import ExplorationBudget

LONG_READ = 64  # unread tokens (a prompt) whose reading by the draft needs this call's own evidence
FRONT = 64  # tokens of a call whose exploration budget is granted up front


@attrs.define
class CostAwarePolicy(PolicyBase):
    """Speculate only where it pays, by measured costs and calibrated acceptance (no published rule).

    Its parts: an `AcceptanceModel` (a: per-decile acceptance; a0: the draft model's first token),
    a `CostModel` (D, B, V(w) measured on this machine; `measure=False` uses the priors only, so
    that runs do not depend on the clock) and an `ExplorationBudget`.

    Rule. Plain decoding costs V(1) per token. With n tokens already kept this round and P the
    estimated probability that all of them are accepted, position n (its draft step already paid)
    is expected to add P * a accepted tokens, each worth V(1):
      - `should_draft` ends the round without it if P * a * V(1) <= V(n + 2) - V(n + 1), its
        verify increment (a depends on the distribution only, never on the token drawn there);
      - once drawn and kept, `decide` STOPs unless the next token, assumed as likely as this one,
        pays for its draft step and verify increment: P * a**2 * V(1) > D + V(n + 3) - V(n + 2).
    `begin_round` lets the draft model run (up to
    `max_draft` tokens) if a first token is expected to pay, g = a0+ * V(1) - (D + V(2) - V(1)) > 0
    with a0+ = a0 plus `optimism` standard errors, and if the catch-up B * (T - 1) is repaid by g
    over the rounds left in the call. Reading `LONG_READ` or more unread tokens also needs this
    call's own evidence (a verified draft). Otherwise it explores when the budget covers one
    round (`explore_share` of a new prompt's first `FRONT` tokens, then of idle steps), or opens
    the round to tokens that need no forward (copies, lookups) if a first one would pay or can be
    explored; else it returns 0, a plain target step.
    """

    name = "auto"
    max_draft: int = attrs.field(default=16, validator=positive_int)
    draft_cost: float = attrs.field(default=0.25, validator=finite_in(0.0, math.inf))
    width_cost: float = attrs.field(default=0.05, validator=finite_in(0.0, math.inf))
    catchup_cost: float = attrs.field(default=0.005, validator=finite_in(0.0, math.inf))
    prior_acceptance: float = attrs.field(default=0.5, validator=finite_in(0.0, 1.0))
    prior_weight: float = attrs.field(default=1.0, validator=finite_in(0.0, math.inf, low_open=True))
    memory: int = attrs.field(default=500, validator=positive_int)
    explore_share: float = attrs.field(default=0.02, validator=finite_in(0.0, 1.0))
    optimism: float = attrs.field(default=1.0, validator=finite_in(0.0, 10.0))
    measure: bool = attrs.field(default=True, validator=boolean)
    rates: AcceptanceModel = attrs.field(init=False, repr=False)
    costs: CostModel = attrs.field(init=False, repr=False)
    exploration: ExplorationBudget = attrs.field(init=False, factory=ExplorationBudget, repr=False)
    # per call
    _prefill: bool = attrs.field(init=False, default=True, repr=False)  # the next round reads the prompt
    _new_prompt: bool = attrs.field(init=False, default=True, repr=False)
    _verified_rounds: int = attrs.field(init=False, default=0, repr=False)  # rounds of this call with a verified draft
    _generated: int = attrs.field(init=False, default=0, repr=False)
    # per round
    _unread: int = attrs.field(init=False, default=1, repr=False)  # tokens the draft reads first (RoundState.pending)
    _round: list[int] = attrs.field(init=False, factory=list, repr=False)  # bucket of each kept position
    _survival: float = attrs.field(init=False, default=1.0, repr=False)  # P(all kept tokens are accepted)
    _current: float = attrs.field(init=False, default=1.0, repr=False)  # a at the latest position
    _exploring: bool = attrs.field(init=False, default=False, repr=False)
    _asked: int = attrs.field(init=False, default=0, repr=False)  # positions looked at (should_draft calls)
    _lead_deterministic: bool = attrs.field(init=False, default=False, repr=False)  # the round's first proposal had no distribution
    _model_round: bool = attrs.field(init=False, default=True, repr=False)  # the draft model may run this round

    def __attrs_post_init__(self) -> None:
        self.rates = AcceptanceModel(self.prior_acceptance, self.prior_weight, self.memory)
        self.costs = CostModel(self.draft_cost, self.width_cost, self.catchup_cost)

    # ------------------------------------------------------------------ estimates
    def acceptance(self, features: DraftFeatures) -> float:
        """Estimated probability that the token drawn here is accepted, given the previous ones were."""
        return self.rates.estimate(self.rates.bucket(features))

    def first_acceptance(self) -> float:
        return self.rates.first.value

    def first_acceptance_bound(self) -> float:
        """a0 plus `optimism` standard errors: what begin_round bets on.

        Stopping the draft stops learning whether it would pay, and a0 rests on few observations at
        the start of a call: a few misses in a row, likely enough at a true rate of one half, would
        leave a call plain to its end. The bonus shrinks as this call's rounds accumulate, so a
        draft that keeps missing is still switched off, a few rounds later.
        """
        return self.rates.first.upper(self.optimism)

    def target_step(self) -> float:
        return self.costs.target_step()

    def verify_cost(self, width: int) -> float:
        return self.costs.verify_cost(width)

    def draft_step(self) -> float:
        return self.costs.draft_step()

    def catchup_seconds(self, unread: int) -> float:
        return self.costs.catchup_seconds(unread)

    # ------------------------------------------------------------------ protocol
    def start(self) -> None:
        self._prefill = True
        self.exploration.clear()
        self._new_prompt = True
        self._verified_rounds = 0
        self.costs.new_call()
        self._reset_round()

    def begin_round(self, state: RoundState) -> int:
        self._reset_round()
        new_prompt, self._new_prompt = self._new_prompt, False
        self._unread = max(state.pending, 1)
        costs = self.costs
        first = self.first_acceptance_bound()
        setup = costs.catchup_seconds(self._unread)
        gain = first * costs.target_step() - (costs.draft_step() + costs.increment(0))
        if not new_prompt and self._may_read() and gain > 0 and gain * state.remaining / (1.0 + first) > setup:
            return self.max_draft
        if new_prompt:
            self.exploration.grant(self.explore_share * min(state.remaining, FRONT) * costs.target_step())
        self._generated = state.generated
        if self._explore(costs.draft_step() + setup + costs.increment(0)):
            return self.max_draft
        self._model_round = False
        return self.max_draft if self._open_to_copies() else 0

    def _may_read(self) -> bool:
        """a0 carried from other prompts does not commit a new one to reading its prompt: reading
        `LONG_READ` or more unread tokens is an investment made only on this call's own evidence (a
        verified draft) or through the exploration budget."""
        return self._verified_rounds > 0 or self._unread < LONG_READ

    def _open_to_copies(self) -> bool:
        """A round without a draft-model forward is open to tokens that need none (copies, lookups)
        if a first one would pay, or as an exploration of their verify increment."""
        return self._pays(self.rates.estimate(DETERMINISTIC), 0) or self._explore(self.costs.increment(0))

    def _explore(self, cost: float) -> bool:
        self._exploring = self.exploration.spend(cost)
        return self._exploring

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
        bucket = self.rates.bucket(features)
        forced = self._exploring and features.position == 0
        if not forced and not self._pays(self.rates.estimate(bucket), features.position):
            return False
        self._round.append(bucket)
        self._current = self.rates.estimate(bucket)
        self._survival *= self._current
        return True

    def _pays(self, a: float, position: int) -> bool:
        """Is a token at `position`, accepted with probability `a` once the kept ones are, worth its verify increment?"""
        return self._survival * a * self.costs.target_step() > self.costs.increment(position)

    def decide(self, features: TokenFeatures) -> Decision:
        return self.decide_scored(features, None)

    def decide_scored(self, features: TokenFeatures, predicted: float | None) -> Decision:
        """`decide` with another model's estimate of this token's acceptance (PACER's pre-verifier).

        It replaces the top-1 decile for this position by the score's own decile, calibrated from
        outcomes like the others, so a miscalibrated predictor still yields calibrated costs.
        Used after the draw only, where stopping cannot bias.
        """
        if predicted is not None and not features.deterministic:
            bucket = self.rates.scored_bucket(predicted)
            self._round[features.position] = bucket
            a = self.rates.estimate(bucket)
            self._survival = self._survival / self._current * a if self._current > 0 else 0.0
            self._current = a
        gain = self._survival * self._current * self.costs.target_step()
        # the next token's draft step: after a copied or looked-up token the next is one too (the
        # copy runs on) or the proposer asks allows_forward first; in a copy-only round it never is
        step = self.costs.draft_step() if self._model_round and not features.deterministic else 0.0
        if gain <= step + self.costs.increment(features.position + 1):
            return Decision.STOP
        return Decision.CONTINUE

    def observe(self, verification: Verification) -> None:
        drafted, accepted = verification.drafted, verification.accepted
        forwarded = verification.draft_forwards > 0  # the draft model ran this round
        if self.measure:
            self.costs.measure(verification, prefill=self._prefill, unread=self._unread)
        self._prefill = False
        self._new_prompt = False
        self._verified_rounds += drafted > 0 and forwarded  # evidence about the draft model
        self.rates.learn(self._round, drafted, accepted)
        if forwarded and self._model_round and not self._lead_deterministic:
            # a0 prices a round in which the draft runs: one whose first token was declined is a
            # miss; a round led by a copy or a lookup says nothing about the draft model
            self.rates.first.add(float(accepted > 0))
        elif not forwarded and not (self._asked or self._round) and self._generated >= FRONT:
            step = verification.verify_seconds if self.measure and verification.verify_seconds > 0 else self.costs.target_step()
            self.exploration.grant(self.explore_share * step)  # an idle step earns exploration budget
        self._reset_round()

    def _reset_round(self) -> None:
        self._asked = 0
        self._lead_deterministic = False
        self._round.clear()
        self._survival = 1.0
        self._current = 1.0
        self._exploring = False
        self._model_round = True
