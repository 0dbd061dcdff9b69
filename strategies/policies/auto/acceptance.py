"""How likely a draft token is to be accepted, learned from verification outcomes.

Acceptance is calibrated per decile of the draft's top-1 probability (deterministic proposals,
copies and lookups, have a bucket of their own), and per decile of an external predictor's score
where one prices the token (PACER's `rule=cost`). Each estimate is a `DiscountedRate` shrunk
towards its decile's midpoint, so a miscalibrated draft or predictor still yields calibrated
costs. The first draft-model token of a round has a rate of its own (`first`), which prices a
round in which the draft model runs at all.
"""

from __future__ import annotations

import attrs

from specdec.features import DraftFeatures
from specdec.strategies.estimates import DiscountedRate

DECILES = 10
DETERMINISTIC = DECILES  # the bucket of tokens proposed without a distribution
SCORED = DECILES + 1  # first bucket of a predictor's score deciles
BUCKETS = SCORED + DECILES


def decile(probability: float) -> int:
    return min(max(int(probability * DECILES), 0), DECILES - 1)


@attrs.define
class AcceptanceModel:
    """Per-bucket acceptance rates and the first-token rate (see module docstring)."""

    prior_acceptance: float  # prior of the first-token rate and of deterministic tokens
    prior_weight: float  # pseudo-observations of each prior
    memory: int  # outcomes are discounted by 1 - 1/memory
    buckets: list[DiscountedRate] = attrs.field(init=False)
    first: DiscountedRate = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        keep = 1.0 - 1.0 / self.memory
        self.buckets = [DiscountedRate(self._prior(b), self.prior_weight, keep) for b in range(BUCKETS)]
        self.first = DiscountedRate(self.prior_acceptance, self.prior_weight, keep)

    def _prior(self, bucket: int) -> float:
        if bucket == DETERMINISTIC:
            return self.prior_acceptance
        return ((bucket % SCORED) + 0.5) / DECILES

    @staticmethod
    def bucket(features: DraftFeatures) -> int:
        return DETERMINISTIC if features.deterministic else decile(features.top_prob)

    @staticmethod
    def scored_bucket(score: float) -> int:
        return SCORED + decile(score)

    def estimate(self, bucket: int) -> float:
        return self.buckets[bucket].value

    def learn(self, buckets: list[int], drafted: int, accepted: int) -> None:
        """Outcomes of a round's drafted positions, up to and including the first rejection
        (later ones were not tested)."""
        for i, bucket in enumerate(buckets[: min(drafted, accepted + 1)]):
            self.buckets[bucket].add(float(i < accepted))
