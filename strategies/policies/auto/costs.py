"""What drafting costs on this machine, measured online from each round's timings.

  - D, one draft step: the lower quartile over recent steady rounds (the draft had at most two
    tokens to read first) of draft seconds per draft-model forward;
  - catch-up: before its first token the draft reads every context token it has not seen (the
    whole prompt at the start of a call; the proposer reports how many, `RoundState.pending`):
    that forward costs D + B * (T - 1) for T tokens, B measured from rounds with T >= 16 and never
    estimated below its prior (reads after short idle stretches underrate a long prompt's);
  - V(w), one target forward over w tokens (draft tokens, branches and the bonus position): the
    lower quartile of this call's timings at that width (forwards grow with the context, so each
    call re-measures them), padded with the earlier estimate until there are three; a width not
    measured in this call is priced as V(1) times its ratio V(w) / V(1) from earlier calls, else
    1 + `width_cost` * (w - 1).
Priors, in units of V(1), stand in until measured: D = `draft_cost` * V(1), B = `catchup_cost`
* V(1). Costs that a call did not re-measure fade back to their priors over `STALE_CALLS` calls:
a slow stretch of a shared machine must not price drafting out for good.
"""

from __future__ import annotations

import math
from collections import deque

import attrs

from specdec.verification import Verification

TIMING_WINDOW = 9
QUANTILE = 0.25  # timings are summarised by their lower quartile (see `typical`)
STALE_CALLS = 3  # a cost not re-measured for this many calls is back at its prior


@attrs.define
class CostModel:
    """D, B and V(w) with their priors (see module docstring); seconds."""

    draft_cost: float
    width_cost: float
    catchup_cost: float
    _verify: dict[int, deque[float]] = attrs.field(init=False, factory=dict, repr=False)
    _draft: deque[float] = attrs.field(init=False, factory=lambda: deque(maxlen=TIMING_WINDOW), repr=False)
    _catchup: deque[float] = attrs.field(init=False, factory=lambda: deque(maxlen=TIMING_WINDOW), repr=False)
    _ratios: dict[int, float] = attrs.field(init=False, factory=dict, repr=False)  # V(w) / V(1) of earlier calls
    _step_prior: float = attrs.field(init=False, default=1.0, repr=False)
    _draft_timed: bool = attrs.field(init=False, default=False, repr=False)  # a draft step was timed this call

    def target_step(self) -> float:
        """V(1): one plain target step (the last call's until measured; 1.0 before anything is)."""
        prior = self._step_prior if self._ratios else None
        if 1 in self._verify:
            return typical(self._verify[1], prior)
        if self._verify:
            width = min(self._verify)
            return typical(self._verify[width]) / self._shape(width)
        return self._step_prior

    def verify_cost(self, width: int) -> float:
        """V(width): one target forward over `width` tokens."""
        if width in self._verify:
            # padded with the shape known so far (earlier calls, else the prior), also in a first call:
            # one slow forward at a width must not price that width out before it is measured again
            prior = self.target_step() * self._shape(width) if width > 1 else None
            return typical(self._verify[width], prior)
        return self.target_step() * self._shape(width)

    def increment(self, kept: int) -> float:
        """Extra verify cost of one more draft token when `kept` are already in the draft."""
        return max(0.0, self.verify_cost(kept + 2) - self.verify_cost(kept + 1))

    def draft_step(self) -> float:
        return typical(self._draft) if self._draft else self.draft_cost * self.target_step()

    def catchup_seconds(self, unread: int) -> float:
        """Extra cost of the draft's first forward when it has `unread` tokens to read, beyond one step."""
        per_token = self.catchup_cost * self.target_step()
        if self._catchup:
            per_token = max(per_token, typical(self._catchup))
        return per_token * max(unread - 1, 0)

    def _shape(self, width: int) -> float:
        """V(width) / V(1) as measured in earlier calls, else the prior (`_prior_shape`)."""
        return self._ratios.get(width, self._prior_shape(width))

    def _prior_shape(self, width: int) -> float:
        """V(width) / V(1) before it is measured: 1 + `width_cost` * (width - 1)."""
        return 1.0 + self.width_cost * (width - 1)

    def measure(self, verification: Verification, *, prefill: bool, unread: int) -> None:
        """Record a round's timings (`prefill`: the call's first round, whose forward reads the prompt)."""
        if not prefill and verification.verify_seconds > 0:
            # keyed by the forward's real width: a proposer's branches widen it beyond the draft
            self._verify.setdefault(verification.width, deque(maxlen=TIMING_WINDOW)).append(verification.verify_seconds)
        forwards, seconds = verification.draft_forwards, verification.draft_seconds
        if not forwards or seconds <= 0:  # a model-free round times no model
            return
        if unread <= 2:
            self._draft.append(seconds / forwards)
            self._draft_timed = True
        elif unread >= 16:
            self._catchup.append(max(seconds - forwards * self.draft_step(), 0.0) / (unread - 1))

    def new_call(self) -> None:
        """Stale costs fade towards their priors; verify costs, which depend on the context length,
        are re-measured by the new call, keeping their shape."""
        self._age()
        if self._verify:
            step = self.target_step()
            self._ratios.update({w: self.verify_cost(w) / step for w in self._verify if step > 0})
            self._ratios[1] = 1.0
            self._step_prior = step
            self._verify.clear()

    def _age(self) -> None:
        """The draft's oldest timings are dropped if the last call timed none (the prior stands in
        when none are left), and the shape of a width not verified moves a share towards the prior."""
        if not self._draft_timed:
            for _ in range(min(len(self._draft), math.ceil(TIMING_WINDOW / STALE_CALLS))):
                self._draft.popleft()
        self._draft_timed = False
        for width, ratio in self._ratios.items():
            if width not in self._verify:
                self._ratios[width] = ratio + (self._prior_shape(width) - ratio) / STALE_CALLS


def typical(samples: deque[float], prior: float | None = None, weight: int = 3) -> float:
    """What a forward costs, from this call's timings: their lower quartile.

    Interference on a shared CPU only ever adds time, in bursts, which moves a median of a handful
    of timings a lot; the lower quartile keeps the ratios between widths, which decide what to
    draft. While there are fewer than `weight` timings they are padded with the earlier estimate
    (`prior`), so that one slow forward cannot stop drafting for a whole call.
    """
    values = list(samples)
    if prior is not None and len(values) < weight:
        values += [prior] * (weight - len(values))
    values.sort()
    return values[int(QUANTILE * (len(values) - 1))]
