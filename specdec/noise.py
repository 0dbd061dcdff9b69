"""Keyed, counter-based noise: a draw is a function of its key, not of the draws made before it.

A key is a tuple of integers in [0, 2**64) (seed, sequence, position, purpose, ...), hashed to 64
bits by chaining SplitMix64's finaliser over its parts. `uniform(*key)` takes 53 bits of that
hash. `exponentials(*key, size=n)` (and `gumbel`, minus their logarithm) reads n doubles from a
numpy PCG64 stream seeded with the hash: the stream is read in order, so entry i is the same
whatever `n` is (a draft's vocabulary may be smaller than the target's).

Independence assumptions: distinct keys give hashes that behave as independent uniform 64-bit
values (SplitMix64 passes BigCrush; two keys of one generation collide with chance about
n**2 / 2**65 for n keys), and PCG64 streams from distinct seeds (through numpy's SeedSequence)
are independent, as numpy documents for parallel streams. These are the usual assumptions of
seeded simulation, not cryptographic guarantees.
"""

from __future__ import annotations

import numpy as np
import torch

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
UNIT = 2.0**-53  # one step of a 53-bit uniform


def mix(state: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit integers with full avalanche."""
    z = (state + GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def key_hash(*parts: int) -> int:
    """The 64-bit hash of a key (its parts in order)."""
    h = 0
    for part in parts:
        if not 0 <= part <= MASK:
            raise ValueError(f"a noise key's parts are integers in [0, 2**64), got {part!r}")
        h = mix(h ^ part)
    return h


def uniform(*key: int) -> float:
    """A uniform in [0, 1) with float64's 53 bits, a function of `key` alone."""
    return (key_hash(*key) >> 11) * UNIT


def exponentials(*key: int, size: int) -> torch.Tensor:
    """`size` independent standard exponentials (float64) for `key`; entry i does not depend on `size`.

    E = -log(u + 2**-54) for 53-bit uniforms u: every E is finite and positive (u = 0 would give an
    infinite E, a token never drawn, with probability 2**-53 each)."""
    u = np.random.Generator(np.random.PCG64(key_hash(*key))).random(size)
    u += UNIT / 2
    np.log(u, out=u)
    np.negative(u, out=u)
    return torch.from_numpy(u)


def gumbel(*key: int, size: int) -> torch.Tensor:
    """`size` independent standard Gumbel values (float64): -log of `exponentials(*key, size=size)`."""
    return exponentials(*key, size=size).log_().neg_()


def race(weights: torch.Tensor, noise: torch.Tensor) -> int:
    """Gumbel-max in its exponential form: argmax_i log w_i + G_i with G_i = -log E_i is
    argmin_i E_i / w_i, an exact draw from w / sum(w) for independent standard exponentials E_i
    (one division per entry instead of two logarithms). `noise` holds at least len(weights) E_i;
    zero weights give infinite ratios and are never drawn. The weights must be finite, >= 0,
    with a positive sum (the caller checks)."""
    w = weights.detach().double().numpy()
    with np.errstate(divide="ignore"):
        ratios = noise.numpy()[: w.shape[0]] / w
    return int(np.argmin(ratios))
