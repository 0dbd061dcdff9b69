"""The single source of randomness of a generation.

Every random draw of a speculative round (draft sampling, acceptance coins, residual and bonus
draws) goes through one `Sampler`. The default is a seeded torch generator; tests substitute an
enumerating sampler that follows every branch with its exact probability.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Sampler(Protocol):
    def categorical(self, weights: torch.Tensor) -> int:
        """Draw an index with probability proportional to `weights` (a 1-D tensor of probabilities)."""
        ...

    def accept(self, probability: float) -> bool:
        """Return True with the given probability (a coin for the acceptance test)."""
        ...


class TorchSampler:
    """A seeded `torch.Generator`: the same seed gives the same generation."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def categorical(self, weights: torch.Tensor) -> int:
        # Inverse-CDF with one uniform: index i is drawn iff cum[i-1] <= u < cum[i], i.e. with
        # probability weights[i] / sum (zero weights have empty intervals). torch.multinomial
        # draws one exponential per vocabulary entry for a single sample, several times slower
        # over a 49k vocabulary, and this runs up to k + 2 times a round.
        cumulative = torch.cumsum(weights.float(), dim=0)
        total = cumulative[-1]
        index = int(torch.searchsorted(cumulative, torch.rand((), generator=self._generator) * total, right=True))
        if index >= weights.shape[0]:  # u rounded up to the total: the last index with weight
            index = int(torch.searchsorted(cumulative, total))
        return index

    def accept(self, probability: float) -> bool:
        if probability >= 1.0:
            return True
        return float(torch.rand((), generator=self._generator)) < probability

    def __repr__(self) -> str:
        return f"TorchSampler(seed={self.seed})"
