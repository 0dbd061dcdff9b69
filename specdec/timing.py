"""Forward costs of a model on this machine, timed in interleaved sweeps.

Shared by the benchmarks (the speedup a round model predicts) and by training code that tunes a
policy to the machine's costs.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

from specdec.integrations.base import LanguageModel


def sweep_seconds(models: dict[str, tuple[LanguageModel, Sequence[int]]], context: Sequence[int], repeats: int) -> dict[str, list[float]]:
    """Median forward seconds of each model at each of its widths after `context`.

    Every (model, width) is timed once per sweep and the sweeps repeat, so a slow moment of the
    machine touches all widths alike instead of skewing one of them.
    """
    for model, _ in models.values():
        model.reset()
        model.forward(list(context), keep=1)
    times = {name: {w: [] for w in widths} for name, (_, widths) in models.items()}
    for _ in range(repeats):
        for name, (model, widths) in models.items():
            for width in widths:
                new = list(context[-width:]) if len(context) >= width else [context[-1]] * width
                start = time.perf_counter()
                model.forward(new, keep=width)
                times[name][width].append(time.perf_counter() - start)
                model.crop(len(context))
    for model, _ in models.values():
        model.reset()
    return {name: [statistics.median(times[name][w]) for w in widths] for name, (_, widths) in models.items()}


def prefill_seconds(model: LanguageModel, context: Sequence[int], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        model.reset()
        start = time.perf_counter()
        model.forward(list(context), keep=1)
        times.append(time.perf_counter() - start)
    model.reset()
    return statistics.median(times)
