"""Online estimates shared by the adaptive strategies: a success rate that forgets and a prior.

Policies and proposers learn rates from verification outcomes (how often a draft position is
accepted, how often a copy's first token is emitted). Each wants the same two things: recent
outcomes weigh more than old ones, and an estimate with few observations leans on a prior.
`DiscountedRate` is that, once.
"""

from __future__ import annotations

import math

import attrs


@attrs.define
class DiscountedRate:
    """value = (hits + weight * prior) / (trials + weight), observations discounted by `keep`.

    Every `add` first multiplies the earlier observations by `keep` (1.0: never forget), so the
    effective memory is about 1 / (1 - keep) observations. The prior never fades: it is worth
    `weight` observations whatever was seen.
    """

    prior: float = 0.5
    weight: float = 1.0
    keep: float = 1.0
    hits: float = 0.0
    trials: float = 0.0

    @property
    def value(self) -> float:
        """The estimate (0.0 with neither evidence nor prior weight)."""
        evidence = self.trials + self.weight
        return (self.hits + self.weight * self.prior) / evidence if evidence > 0 else 0.0

    def add(self, hits: float, trials: float = 1.0) -> None:
        """Record `hits` successes out of `trials` attempts (a single outcome: add(float(ok)))."""
        self.hits = self.hits * self.keep + hits
        self.trials = self.trials * self.keep + trials

    def upper(self, deviations: float) -> float:
        """The value plus `deviations` standard errors (a bet on a rate seen only a few times), at most 1."""
        p = self.value
        return min(1.0, p + deviations * math.sqrt(p * (1.0 - p) / (self.trials + self.weight)))

    def forget(self) -> None:
        """Drop every observation: back to the prior."""
        self.hits = self.trials = 0.0
