"""Step costs of the models, measured directly, for the speedup a round model predicts.

Leviathan et al.'s analysis prices a round as k draft steps plus one target forward over k + 1
tokens. Measuring those costs on this machine (at a realistic context length) and combining them
with the acceptance a run actually saw gives the speedup the loop should reach; the gap between
that prediction and the measured speedup is what the loop costs beyond its forwards.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import attrs

from specdec.integrations.base import LanguageModel


def forward_seconds(model: LanguageModel, context: Sequence[int], width: int, repeats: int = 7) -> float:
    """Median seconds of one forward over `width` new tokens after `context` (cache reused)."""
    model.reset()
    model.forward(list(context), keep=1)
    times = []
    new = list(context[-width:]) if len(context) >= width else [context[-1]] * width
    for _ in range(repeats):
        start = time.perf_counter()
        model.forward(new, keep=width)
        times.append(time.perf_counter() - start)
        model.crop(len(context))
    model.reset()
    return statistics.median(times)


def prefill_seconds(model: LanguageModel, context: Sequence[int], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        model.reset()
        start = time.perf_counter()
        model.forward(list(context), keep=1)
        times.append(time.perf_counter() - start)
    model.reset()
    return statistics.median(times)


@attrs.frozen
class StepCosts:
    """Seconds per forward: target over 1..max_width tokens, draft over 1 and 2 tokens."""

    target: tuple[float, ...]  # target[n - 1] = a forward over n tokens
    draft: tuple[float, ...]
    target_prefill: float
    draft_prefill: float

    @property
    def cost_ratio(self) -> float:
        return self.draft[0] / self.target[0]

    def predicted_speedup(self, base_seconds_per_token: float, generated: int, rounds: int, draft_forwards: int, k: int) -> float:
        """Speedup the measured rounds should reach, pricing each forward from this table.

        Absolute prices come from the target-only run of the same prompts (its seconds per token,
        prefill included): the micro-benchmark above underrates forwards in a real decode at long
        context, but its *ratios* (verify over k + 1 tokens vs one token, draft step vs target
        step) carry over. A round is one target forward over k + 1 tokens; every draft forward
        costs c target steps.
        """
        width = min(k + 1, len(self.target))
        verify = base_seconds_per_token * self.target[width - 1] / self.target[0]
        draft = base_seconds_per_token * self.cost_ratio
        spec_seconds = rounds * verify + draft_forwards * draft
        return (generated / spec_seconds) / (1.0 / base_seconds_per_token)


def measure_step_costs(target: LanguageModel, draft: LanguageModel, context: Sequence[int], max_width: int = 9) -> StepCosts:
    return StepCosts(
        target=tuple(forward_seconds(target, context, n) for n in range(1, max_width + 1)),
        draft=tuple(forward_seconds(draft, context, n) for n in (1, 2)),
        target_prefill=prefill_seconds(target, context),
        draft_prefill=prefill_seconds(draft, context),
    )
