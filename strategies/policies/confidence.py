"""Stop drafting when the draft is unsure of its own token (transformers' confidence criterion)."""

from __future__ import annotations

from collections import deque
from typing import Iterable

import attrs

from specdec.errors import ConfigurationError
from specdec.features import TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, boolean, finite_in, positive_int
from specdec.verification import Verification

FALSE_NEGATIVE_WEIGHT = 3.0  # cutting a token that would have been accepted costs 3x a rejected one
MIN_SAMPLES = 5  # the threshold is re-fitted once there are more samples than this (and both outcomes)


def roc_threshold(samples: Iterable[tuple[float, bool]], fn_weight: float = FALSE_NEGATIVE_WEIGHT) -> float | None:
    """The threshold t minimising FPR + fn_weight * FNR for the rule "keep drafting while prob >= t".

    `samples` are (draft probability, accepted?) pairs. Candidate thresholds are the observed
    probabilities (the points of the ROC curve); ties go to the highest threshold, like an argmin
    over scikit-learn's decreasing `roc_curve` thresholds. None when one class is missing.
    """
    ordered = sorted(samples, key=lambda s: -s[0])
    positives = sum(1 for _, accepted in ordered if accepted)
    negatives = len(ordered) - positives
    if positives == 0 or negatives == 0:
        return None
    best: tuple[float, float] | None = None  # (cost, threshold)
    tp = fp = 0
    for i, (prob, accepted) in enumerate(ordered):
        tp += accepted
        fp += not accepted
        if i + 1 < len(ordered) and ordered[i + 1][0] == prob:
            continue  # a threshold keeps every sample of equal probability together
        cost = fp * positives + fn_weight * (positives - tp) * negatives  # (FPR + w FNR) * P * N, exact ties
        if best is None or cost < best[0]:
            best = (cost, prob)
    return best[1] if best is not None else None


@attrs.define
class ConfidencePolicy(PolicyBase):
    """transformers' `assistant_confidence_threshold` (`AssistedCandidateGenerator`, `generation/candidate_generator.py`).

    Keep each drafted token, and stop the round when its draft probability (untempered softmax) is
    below the threshold (default 0.4, transformers' default). Tokens proposed without a
    distribution (`deterministic`) never stop the round. `max_draft=20` is transformers'
    `num_assistant_tokens` (since ~4.45).

    `adapt=True` re-fits the threshold online as transformers does when scikit-learn is present:
    the probabilities of drafted tokens up to and including the first rejection are recorded with
    their outcome; once more than 5 samples hold both outcomes, the threshold becomes the ROC point
    minimising FPR + 3 * FNR. Unlike transformers, only the last `history` samples are kept, so the
    re-fit costs O(history log history) per round at most. The learned threshold persists across
    `generate` calls (transformers stores it in the assistant's generation config).
    """

    name = "confidence"
    threshold: float = attrs.field(default=0.4, validator=finite_in(0.0, 1.0))
    max_draft: int = attrs.field(default=20, validator=positive_int)
    adapt: bool = attrs.field(default=False, validator=boolean)
    history: int = attrs.field(default=2000, validator=positive_int)
    current: float = attrs.field(init=False)
    samples: deque[tuple[float, bool]] = attrs.field(init=False, repr=False)
    _round: list[float | None] = attrs.field(init=False, factory=list, repr=False)  # probs, None if deterministic

    def __attrs_post_init__(self) -> None:
        if self.history <= MIN_SAMPLES:
            raise ConfigurationError(
                f"history must be > {MIN_SAMPLES} (the re-fit needs more than {MIN_SAMPLES} samples), got {self.history}"
            )
        self.current = self.threshold
        self.samples = deque(maxlen=self.history)

    def begin_round(self, state: RoundState) -> int:
        self._round.clear()
        return self.max_draft

    def decide(self, features: TokenFeatures) -> Decision:
        if features.deterministic:
            self._round.append(None)
            return Decision.CONTINUE
        self._round.append(features.prob)
        return Decision.STOP if features.prob < self.current else Decision.CONTINUE

    def observe(self, verification: Verification) -> None:
        drafted = self._round[: verification.drafted]
        self._round.clear()
        if not self.adapt or not drafted:
            return
        for i, prob in enumerate(drafted[: verification.accepted + 1]):
            if prob is not None:
                self.samples.append((prob, i < verification.accepted))
        if len(self.samples) > MIN_SAMPLES:
            fitted = roc_threshold(self.samples)
            if fitted is not None:
                self.current = fitted
