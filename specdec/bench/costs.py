"""Step costs of the models, measured directly, for the speedup a round model predicts.

The analysis of arXiv 2211.17192 prices a round as k draft steps plus one target forward over k + 1
tokens. Measuring those costs on this machine (at a realistic context length) and combining them
with the acceptance a run actually saw gives the speedup the loop should reach; the gap between
that prediction and the measured speedup is what the loop costs beyond its forwards.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from specdec.integrations.base import LanguageModel
from specdec.timing import prefill_seconds, sweep_seconds


@attrs.frozen
class StepCosts:
    """Seconds per forward: target over 1..max_width tokens, draft over 1 and 2 tokens."""

    target: tuple[float, ...]  # target[n - 1] = a forward over n tokens
    draft: tuple[float, ...]

    @property
    def cost_ratio(self) -> float:
        return self.draft[0] / self.target[0]

    def predicted_seconds(
        self, base_seconds: float, generated: int, rounds: int, draft_forwards: int, k: int, prefill: "Prefill"
    ) -> float:
        """Seconds a speculative generation of one prompt should take, given the rounds it ran.

        The prompt's prefill is priced apart (on 1,000-token prompts it is a quarter of a 64-token
        target-only run, and it does not shrink with speculation). Decode steps are priced from the
        target-only run of the same prompt: its seconds per token after prefill. The micro-benchmark
        underrates steps inside a real decode, but its *ratios* carry over (verify over k + 1 tokens
        vs one token, draft step vs target step). The first round's verify and the first draft
        forward are the two prefills; every further round is one verify over k + 1 tokens and every
        further draft forward costs c target steps.
        """
        step = seconds_per_step(base_seconds, prefill.target, generated)
        width = min(k + 1, len(self.target))
        verify = step * self.target[width - 1] / self.target[0]
        draft = step * self.cost_ratio
        return decode_seconds(prefill.target + prefill.draft, verify, rounds) + max(draft_forwards - 1, 0) * draft


def seconds_per_step(seconds: float, prefill_seconds: float, tokens: int) -> float:
    """A target-only decode's seconds per step: its time after the prefill (which yields the first
    token) over the tokens after the first."""
    return max(seconds - prefill_seconds, 0.0) / max(tokens - 1, 1)


def decode_seconds(prefill_seconds: float, step_seconds: float, forwards: int) -> float:
    """A decode priced at its prefill (which yields the first token) and one step per further
    forward: target-only makes one per token, speculation one per round."""
    return prefill_seconds + max(forwards - 1, 0) * step_seconds


@attrs.frozen
class Prefill:
    """Seconds to encode one prompt, for the target and the draft."""

    target: float
    draft: float


def measure_prefill(target: LanguageModel, draft: LanguageModel, context: Sequence[int]) -> Prefill:
    return Prefill(target=prefill_seconds(target, context), draft=prefill_seconds(draft, context))


def measure_step_costs(target: LanguageModel, draft: LanguageModel, context: Sequence[int], max_width: int = 9, repeats: int = 11) -> StepCosts:
    measured = sweep_seconds({"target": (target, range(1, max_width + 1)), "draft": (draft, (1, 2))}, context, repeats)
    return StepCosts(target=tuple(measured["target"]), draft=tuple(measured["draft"]))
