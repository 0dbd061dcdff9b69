"""The `budget` policy: spend draft tokens while the whole draft is still likely to survive."""

from __future__ import annotations

import attrs

from specdec.features import TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, finite_in, positive_int


@attrs.define
class BudgetPolicy(PolicyBase):
    """Draft while the product of the draft's token probabilities stays at or above `threshold`.

    That product is the draft model's own estimate that every token drafted so far this round is
    accepted (exactly so when draft and target agree), so the round stops where a further token
    would most likely be wasted. The token that takes the product below the threshold is still
    sent: verifying it costs almost nothing, and it may be accepted. `max_draft` caps a round.
    Deterministic proposals carry probability 1, so with them the policy drafts `max_draft`.
    """

    name = "budget"
    threshold: float = attrs.field(default=0.3, validator=finite_in(0.0, 1.0))
    max_draft: int = attrs.field(default=8, validator=positive_int)
    _survival: float = attrs.field(init=False, default=1.0, repr=False)

    def begin_round(self, state: RoundState) -> int:
        self._survival = 1.0
        return self.max_draft

    def decide(self, features: TokenFeatures) -> Decision:
        self._survival *= features.prob
        return Decision.STOP if self._survival < self.threshold else Decision.CONTINUE
