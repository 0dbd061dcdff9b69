"""The single source of randomness of a generation.

Every random draw of a speculative round (draft sampling, acceptance coins, residual and bonus
draws) goes through one `Sampler`. The default is a seeded torch generator; tests substitute an
enumerating sampler that follows every branch with its exact probability. Without a seed, the seed
is drawn from torch's default generator at the first draw, so `torch.manual_seed(n)` before a call
reproduces it (as with transformers' `generate`) and greedy decoding consumes no randomness.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch

from specdec.errors import NonFiniteLogitsError


@runtime_checkable
class Sampler(Protocol):
    def categorical(self, weights: torch.Tensor) -> int:
        """Draw an index with probability proportional to `weights` (a 1-D tensor of probabilities)."""
        ...

    def accept(self, probability: float) -> bool:
        """Return True with the given probability (a coin for the acceptance test)."""
        ...


def cumulative_weights(weights: torch.Tensor) -> torch.Tensor:
    """The inverse CDF's table, summed in float64: in float32 the running sum near 1 moves in steps
    of 6e-8, so at a 49k vocabulary thousands of small weights are rounded away (never drawn) and
    the draw is about 3e-4 from the exact distribution in total variation."""
    return torch.cumsum(weights.double(), dim=0)


class TorchSampler:
    """A seeded `torch.Generator`: the same seed gives the same generation, in any process.

    `seed=None` takes a fresh seed from torch's default generator when the first draw needs it
    (`seed` then holds it, to reproduce the run).
    """

    def __init__(self, seed: int | None = 0) -> None:
        self.seed = seed
        self._source: torch.Generator | None = None if seed is None else torch.Generator().manual_seed(seed)

    @property
    def _generator(self) -> torch.Generator:
        if self._source is None:
            self.seed = int(torch.randint(0, 2**62, ()))  # torch's default generator: torch.manual_seed applies
            self._source = torch.Generator().manual_seed(self.seed)
        return self._source

    def categorical(self, weights: torch.Tensor) -> int:
        # Inverse-CDF with one uniform: index i is drawn iff cum[i-1] <= u < cum[i], i.e. with
        # probability weights[i] / sum (zero weights have empty intervals). torch.multinomial
        # draws one exponential per vocabulary entry for a single sample, several times slower
        # over a 49k vocabulary, and this runs up to k + 2 times a round.
        cumulative = cumulative_weights(weights)
        total = cumulative[-1]
        if not 0.0 < float(total) < math.inf:  # else searchsorted would return len(weights), not a token
            raise NonFiniteLogitsError(f"cannot draw a token from weights summing to {float(total)} (NaN, infinite or all zero)")
        index = int(torch.searchsorted(cumulative, self._uniform() * total, right=True))
        if index >= weights.shape[0]:  # u rounded up to the total: the last index with weight
            index = int(torch.searchsorted(cumulative, total))
        return index

    def accept(self, probability: float) -> bool:
        if probability >= 1.0:
            return True
        return float(self._uniform()) < probability

    def _uniform(self) -> torch.Tensor:
        """One uniform in [0, 1) with float64's 53 bits (float32's 24 would quantize every draw)."""
        return torch.rand((), dtype=torch.float64, generator=self._generator)

    def __repr__(self) -> str:
        return f"TorchSampler(seed={self.seed})"
