"""Exact enumeration of every random branch of a generation.

`EnumeratingSampler` replays a prescribed list of choices and records every draw it makes with
the raw weights it was given (it does not normalise them, so an unnormalised residual shows up
as lost probability mass). `enumerate_outputs` re-runs a generation once per leaf of the random
tree (depth-first, like an odometer) and sums the probability of each output.

The draws' sites (`specdec.samplers.Site`) are ignored: each draw is a fresh random choice, which is
what keyed draws are when no key repeats (the standard mode's guarantee). Coupled draws share one
noise vector across the draws at a position, which per-draw enumeration cannot follow, so they are
refused; coupled sampling is proven by its identity with target-only sampling instead.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Hashable

import torch

from specdec.samplers import Purpose, Site


class _Draw:
    __slots__ = ("options", "weights", "choice")

    def __init__(self, options: list, weights: list[float], choice: int) -> None:
        self.options, self.weights, self.choice = options, weights, choice


class EnumeratingSampler:
    def __init__(self, prescribed: list[int]) -> None:
        self.prescribed = prescribed
        self.trace: list[_Draw] = []
        self.probability = 1.0

    def _choose(self, options: list, weights: list[float]):
        depth = len(self.trace)
        choice = self.prescribed[depth] if depth < len(self.prescribed) else 0
        if not options:
            raise AssertionError("a draw with no option of positive weight")
        self.trace.append(_Draw(options, weights, choice))
        self.probability *= weights[choice]
        return options[choice]

    def begin(self) -> None:
        pass

    def categorical(self, weights: torch.Tensor, site: Site) -> int:
        if site.purpose is Purpose.COUPLED:
            raise AssertionError("coupled draws share noise across draws and cannot be enumerated one by one")
        values = weights.tolist()
        options = [i for i, w in enumerate(values) if w > 0]
        return self._choose(options, [values[i] for i in options])

    def accept(self, probability: float, site: Site) -> bool:
        pairs = [(True, min(probability, 1.0)), (False, 1.0 - min(probability, 1.0))]
        pairs = [(o, w) for o, w in pairs if w > 0]
        return self._choose([o for o, _ in pairs], [w for _, w in pairs])


def enumerate_outputs(run: Callable[[EnumeratingSampler], Hashable], max_leaves: int = 200_000) -> dict:
    """Map each possible output of `run` to its exact probability."""
    distribution: dict = defaultdict(float)
    prescribed: list[int] = []
    for _ in range(max_leaves):
        sampler = EnumeratingSampler(prescribed)
        distribution[run(sampler)] += sampler.probability
        trace = sampler.trace
        i = len(trace) - 1
        while i >= 0 and trace[i].choice + 1 >= len(trace[i].options):
            i -= 1
        if i < 0:
            return dict(distribution)
        prescribed = [d.choice for d in trace[:i]] + [trace[i].choice + 1]
    raise AssertionError(f"more than {max_leaves} random branches: the case is too large to enumerate")
