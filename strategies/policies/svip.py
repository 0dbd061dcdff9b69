"""SVIP: stop drafting once the draft's entropy says the next token is unlikely to be accepted."""

from __future__ import annotations

import math

import attrs

from specdec.features import TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, finite_in, positive_int


@attrs.define
class SvipPolicy(PolicyBase):
    """SVIP (Zhang et al., "Draft Model Knows When to Stop", arXiv 2411.18462), as in its code.

    Rule of `vanilla-sd/eval_specbench.py` in the authors' code (Geralt-Targaryen/SVIP): after
    drafting a token, keep it, then stop the round if sqrt(gamma_s * H) > h, where H is the entropy
    in nats of the draft's untempered softmax at that step. With the defaults gamma_s=0.15 (hard-coded there) and
    h=0.3 (`entropy_threshold`), the round stops after the first token whose entropy exceeds
    h**2 / gamma_s = 0.6 nats. `max_draft=40` is the code's hard cap per round.
    """

    name = "svip"
    h: float = attrs.field(default=0.3, validator=finite_in(0.0, math.inf))
    gamma_s: float = attrs.field(default=0.15, validator=finite_in(0.0, math.inf, low_open=True))
    max_draft: int = attrs.field(default=40, validator=positive_int)

    def begin_round(self, state: RoundState) -> int:
        return self.max_draft

    def decide(self, features: TokenFeatures) -> Decision:
        if math.sqrt(self.gamma_s * features.entropy) > self.h:
            return Decision.STOP
        return Decision.CONTINUE
