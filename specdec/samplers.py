"""The single source of randomness of a generation, keyed by where each draw happens.

Every random draw of a speculative round (draft sampling, acceptance coins, residual and bonus
draws) goes through one `Sampler`, with the `Site` it decides: the token's absolute position, the
draw's purpose and the position where the round's draft starts. `TorchSampler` takes each draw's
randomness from keyed noise (`specdec.noise`), so a draw does not depend on how many draws were
made before it, only on the seed and its site. Tests substitute an enumerating sampler that
follows every branch with its exact probability. Without a seed, the seed is drawn from torch's
default generator at the first draw, so `torch.manual_seed(n)` before a call reproduces it (as
with transformers' `generate`) and greedy decoding consumes no randomness.

Two modes (`SamplingConfig.coupled`):
- standard: a draw's key is (seed, sequence, round start, position, purpose); no key is used twice
  in a sequence (one round per start, at most one draw per position and purpose in a round), so
  the draws are independent uniforms however the rounds fall, and the verifier's rule
  (arXiv 2211.17192, 2302.01318) makes the output exact;
- coupled: every draw at a position is Gumbel-max on one noise vector keyed by (seed, sequence,
  position) alone, shared by the draft's draw and the target's, so the emitted token is the one
  target-only sampling with the same seed emits there, whatever was drafted.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from typing import Protocol, runtime_checkable

import attrs
import torch

from specdec import noise
from specdec.errors import NonFiniteLogitsError


class Purpose(enum.IntEnum):
    """What a draw is for; part of its key."""

    DRAFT = 1  # a draft token sampled from q
    ACCEPT = 2  # the verifier's acceptance coin
    EMIT = 3  # the verifier's draw of the token it emits (bonus, one-hot rule, residual)
    COUPLED = 4  # coupled sampling: draft and target draw on the same noise at a position


@attrs.frozen
class Site:
    """Where a draw happens: the key of its randomness (with the seed and the sequence)."""

    position: int  # absolute position of the token the draw decides (the prompt's tokens count)
    purpose: Purpose
    start: int = 0  # where the round's draft starts: the committed context's length


@runtime_checkable
class Sampler(Protocol):
    def categorical(self, weights: torch.Tensor, site: Site) -> int:
        """Draw an index with probability proportional to `weights` (a 1-D tensor of probabilities)."""
        ...

    def accept(self, probability: float, site: Site) -> bool:
        """Return True with the given probability (a coin for the acceptance test)."""
        ...

    def begin(self) -> None:
        """A generation starts: the sampler's next sequence (a sampler shared by several calls
        does not repeat its draws)."""
        ...


def fresh_seed() -> int:
    """A seed from torch's default generator (so `torch.manual_seed` applies)."""
    return int(torch.randint(0, 2**62, ()))


def cumulative_weights(weights: torch.Tensor) -> torch.Tensor:
    """The inverse CDF's table, summed in float64: in float32 the running sum near 1 moves in steps
    of 6e-8, so at a 49k vocabulary thousands of small weights are rounded away (never drawn) and
    the draw is about 3e-4 from the exact distribution in total variation."""
    return torch.cumsum(weights.double(), dim=0)


def _check_total(total: float) -> None:
    if not 0.0 < total < math.inf:
        raise NonFiniteLogitsError(f"cannot draw a token from weights summing to {total} (NaN, infinite or all zero)")


class TorchSampler:
    """Keyed draws: the same seed gives the same generation, in any process.

    A draw's randomness is a function of (seed, sequence, `Site`) only (`specdec.noise`).
    `sequence` counts the generations this sampler has begun (from `sequence`, 0 by default), so
    a fresh `TorchSampler(seed)` per call reproduces, and one shared by several calls gives a new
    sample each time; prompt i of a batch draws as `TorchSampler(seed, sequence=i)`. `seed=None`
    takes a fresh seed from torch's default generator when the first draw needs it (`seed` then
    holds it, to reproduce the run).
    """

    NOISE_CACHE = 32  # coupled noise vectors kept (a round's positions are drafted, then verified)

    def __init__(self, seed: int | None = 0, sequence: int = 0) -> None:
        self.seed = seed
        self.sequence = sequence
        self._begun = False
        self._noise: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()

    def begin(self) -> None:
        if self._begun:
            self.sequence += 1
            self._noise.clear()
        self._begun = True

    def _seed(self) -> int:
        if self.seed is None:
            self.seed = fresh_seed()
        return self.seed & noise.MASK  # any integer seeds, a negative one too

    def categorical(self, weights: torch.Tensor, site: Site) -> int:
        """A draw on the weights' device, read back in one transfer (the index and the total together)."""
        if site.purpose is Purpose.COUPLED:
            return self._race(weights, self._coupled_noise(site.position, weights.shape[0], weights.device))
        # Inverse-CDF with one uniform: index i is drawn iff cum[i-1] <= u < cum[i], i.e. with
        # probability weights[i] / sum (zero weights have empty intervals). torch.multinomial
        # draws one exponential per vocabulary entry for a single sample, several times slower
        # over a 49k vocabulary, and this runs up to k + 2 times a round.
        cumulative = cumulative_weights(weights)
        total = cumulative[-1:]
        index = torch.searchsorted(cumulative, self._uniform(site) * total, right=True)
        drawn, total_value = torch.cat((index.double(), total)).tolist()
        _check_total(total_value)  # else searchsorted would return len(weights), not a token
        if drawn >= weights.shape[0]:  # u rounded up to the total: the last index with weight
            return int(torch.searchsorted(cumulative, total))
        return int(drawn)

    @staticmethod
    def _race(weights: torch.Tensor, exponentials: torch.Tensor) -> int:
        """Gumbel-max in its exponential form (`specdec.noise.race`, here on the weights' device):
        argmin_i E_i / w_i, zero weights never drawn; the weights' total comes back with the
        index, so an all-zero, NaN or infinite total is refused in the same transfer."""
        w = weights.detach().double()
        ratios = exponentials[: w.shape[0]] / w
        index = torch.argmin(ratios)
        drawn, total = torch.stack((index.double(), w.sum())).tolist()
        _check_total(total)
        return int(drawn)

    def accept(self, probability: float, site: Site) -> bool:
        if probability >= 1.0:
            return True
        return self._uniform(site) < probability

    def _uniform(self, site: Site) -> float:
        """One uniform in [0, 1) with float64's 53 bits (float32's 24 would quantize every draw)."""
        return noise.uniform(self._seed(), self.sequence, site.start, site.position, int(site.purpose))

    def _coupled_noise(self, position: int, size: int, device: torch.device) -> torch.Tensor:
        """The exponentials of `position`, shared by every coupled draw there, on `device` (kept for
        a few positions: the draft draws a position, then the verifier)."""
        key = (self.sequence, position)
        cached = self._noise.get(key)
        if cached is None or cached.shape[0] < size or cached.device != device:
            cached = noise.exponentials(self._seed(), self.sequence, position, int(Purpose.COUPLED), size=size).to(device)
            self._noise[key] = cached
            while len(self._noise) > self.NOISE_CACHE:
                self._noise.popitem(last=False)
        self._noise.move_to_end(key)
        return cached

    def __repr__(self) -> str:
        return f"TorchSampler(seed={self.seed}, sequence={self.sequence})"
