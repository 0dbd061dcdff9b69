"""What a proposed token, and a draft forward, must be worth to go into the draft.

Some proposals come with an estimate of their survival: the chance that the verifier accepts the
token given that it accepts every draft token before it (a copy from the context, whose record
the proposer keeps). The product of the survivals of the round's draft tokens so far is the
token's *reach*: the chance that the token is used. A token costs a slot in the verify forward
whether it is used or not, and saves a target step only if it is used, so it pays while its reach
exceeds its price in target steps; a draft forward pays while the reach of the token it would
draft exceeds the price of the forward plus that token's slot.

Every length policy declares its `Payoff` (the protocol's `payoff` member) and the drafting loop
(`specdec.proposer.ProposalRequest`) applies it to every proposal that comes with a survival
estimate, so that a proposer reports what it knows and the policy prices it. A policy that sees a
copy as a zero-entropy token (fixed k, SVIP) would otherwise keep copies the target mostly rejects.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Payoff:
    """Prices in target steps: one more token in the verify forward, one draft-model forward."""

    # measured on this project's CPU pair: one more verify token costs 0.05-0.07 of a step at the
    # widths copies are verified at, and the int8 default draft's forward 0.15 of a target step
    token_cost: float = 0.1
    forward_cost: float = 0.15

    def keeps(self, reach: float) -> bool:
        """Whether a token used with probability `reach` is worth its verify slot."""
        return reach > self.token_cost

    def forwards(self, reach: float) -> bool:
        """Whether a draft forward whose token is used with probability `reach` pays for itself
        and the token's verify slot."""
        return reach >= self.forward_cost + self.token_cost
