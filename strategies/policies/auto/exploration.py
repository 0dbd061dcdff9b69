"""A budget of time a policy may spend drafting against its own estimates, so that it keeps learning.

A policy that stops drafting stops learning whether drafting would pay. Exploration drafts a round
anyway when the budget covers what that round costs; the budget is a share of the time the call
spends otherwise (granted up front for a new prompt's first tokens, earned by idle target steps),
so exploring costs at most about that share.
"""

from __future__ import annotations

import attrs


@attrs.define
class ExplorationBudget:
    credit: float = 0.0  # seconds left to spend

    def grant(self, seconds: float) -> None:
        self.credit += seconds

    def spend(self, seconds: float) -> bool:
        """Spend `seconds` on this round if the budget covers them."""
        if self.credit < seconds:
            return False
        self.credit -= seconds
        return True

    def clear(self) -> None:
        self.credit = 0.0
