"""AdaEDL: an entropy-based lower bound on acceptance, with an adaptive threshold."""

from __future__ import annotations

import math

import attrs

from specdec.errors import ConfigurationError
from specdec.features import DraftFeatures, TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, finite_in, non_negative_int, positive_int
from specdec.verification import Verification

_unit = finite_in(0.0, 1.0)


@attrs.define
class AdaEdlPolicy(PolicyBase):
    """AdaEDL (Agrawal, Jeon, Lee, arXiv 2410.18351): its stopping criterion and threshold adaptation.

    Before the token at position i >= `min_draft` is drawn (`should_draft`), end the round without
    it if the estimated acceptance lower bound 1 - sqrt(gamma * H) falls below lambda (H: entropy
    in nats of the draft's untempered softmax at that position); its draft forward is already paid
    for. The rule looks at the distribution only, never at the drawn token, so it is exact at any
    temperature. At lambda = 0.5 and gamma = 0.2 it stops before tokens above 1.25 nats.

    lambda adapts after every round that drafted n_d > 0 tokens, n_a of them accepted (Algorithm 1):
        AR <- beta1 * AR + (1 - beta1) * n_a / n_d        (AR starts at alpha)
        lambda' = lambda + eps if AR < alpha, else lambda - eps if n_a != max_draft, else lambda
        lambda <- beta2 * lambda + (1 - beta2) * lambda'
    then lambda is clipped to [0, 1] (a guard of ours: outside it the rule no longer changes).

    Defaults: gamma 0.2, beta1 0.5, beta2 0.9, eps 0.01, alpha 0.9 (paper, via reimplementations);
    initial lambda 0.5 (the paper sweeps 0.3-0.9); min_draft 1; max_draft 16 (CNN-DM headline).
    lambda and AR restart at every `generate` call. The paper takes H at the sampling temperature;
    the features give it untempered (identical at T = 1, and greedy needs it untempered anyway).
    """

    name = "adaedl"
    gamma: float = attrs.field(default=0.2, validator=finite_in(0.0, math.inf, low_open=True))
    initial_lambda: float = attrs.field(default=0.5, validator=_unit)
    beta1: float = attrs.field(default=0.5, validator=_unit)
    beta2: float = attrs.field(default=0.9, validator=_unit)
    eps: float = attrs.field(default=0.01, validator=finite_in(0.0, 1.0))
    alpha: float = attrs.field(default=0.9, validator=_unit)
    min_draft: int = attrs.field(default=1, validator=non_negative_int)
    max_draft: int = attrs.field(default=16, validator=positive_int)
    lam: float = attrs.field(init=False)
    acceptance_ema: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.min_draft > self.max_draft:
            raise ConfigurationError(
                f"adaedl: min_draft ({self.min_draft}) is larger than max_draft ({self.max_draft}); "
                "min_draft tokens are always drafted, so it must be at most max_draft"
            )
        self.start()

    def start(self) -> None:
        self.lam = self.initial_lambda
        self.acceptance_ema = self.alpha

    def begin_round(self, state: RoundState) -> int:
        return self.max_draft

    def should_draft(self, features: DraftFeatures) -> bool:
        return features.position < self.min_draft or 1.0 - math.sqrt(self.gamma * features.entropy) >= self.lam

    def decide(self, features: TokenFeatures) -> Decision:
        return Decision.CONTINUE

    def observe(self, verification: Verification) -> None:
        drafted, accepted = verification.drafted, verification.accepted
        if drafted == 0:
            return
        self.acceptance_ema = self.beta1 * self.acceptance_ema + (1.0 - self.beta1) * accepted / drafted
        if self.acceptance_ema < self.alpha:
            target = self.lam + self.eps
        elif accepted != self.max_draft:
            target = self.lam - self.eps
        else:
            target = self.lam
        self.lam = min(1.0, max(0.0, self.beta2 * self.lam + (1.0 - self.beta2) * target))
