"""Fixed draft length: the classic speculative decoding of arXiv 2211.17192."""

from __future__ import annotations

import attrs

from specdec.features import TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, positive_int


@attrs.define
class FixedPolicy(PolicyBase):
    """Draft exactly `k` tokens every round (fewer only near the length limit or at EOS)."""

    name = "fixed"
    k: int = attrs.field(default=4, validator=positive_int)

    def begin_round(self, state: RoundState) -> int:
        return self.k

    def decide(self, features: TokenFeatures) -> Decision:
        return Decision.CONTINUE
