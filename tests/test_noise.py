"""Keyed noise: Gumbel-max on it is an exact sample, and a vector's entries do not depend on its length.

The sampling test draws one token per key from a small distribution with a long tail and checks the
counts with a chi-square test at alpha = 1e-3 (tail cells pooled) and their total variation from
the exact distribution; the same test on a planted bug (the race run on uniforms instead of
exponentials, which over-weights likely tokens) must reject.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import chisquare

from specdec import noise

DRAWS = 40_000
ALPHA = 1e-3


def long_tail() -> torch.Tensor:
    """16 tokens, p_i proportional to 1 / (i + 1)^1.5 (the last about 0.6% of the first), a zero and a
    token at 1e-4 of the mass, in float32 like a warped distribution."""
    weights = [1.0 / (i + 1) ** 1.5 for i in range(16)] + [0.0]
    weights.append(1e-4 * sum(weights))
    w = torch.tensor(weights, dtype=torch.float64)
    return (w / w.sum()).float()


def draw_counts(p: torch.Tensor, uniforms_instead: bool = False) -> np.ndarray:
    counts = np.zeros(p.shape[0], dtype=np.int64)
    for key in range(DRAWS):
        e = noise.exponentials(99, 0, key, 4, size=p.shape[0])
        if uniforms_instead:  # planted bug: -log dropped
            e = torch.exp(-e)
        counts[noise.race(p, e)] += 1
    return counts


def chi_square_pvalue(counts: np.ndarray, p: torch.Tensor) -> float:
    expected = p.double().numpy() * counts.sum()
    big = expected >= 5
    observed = list(counts[big]) + [counts[~big].sum()]
    wanted = list(expected[big]) + [expected[~big].sum()]
    return float(chisquare(observed, wanted).pvalue)


def test_gumbel_max_on_keyed_noise_is_an_exact_sample():
    p = long_tail()
    counts = draw_counts(p)
    assert counts[16] == 0  # a zero weight is never drawn
    pvalue = chi_square_pvalue(counts, p)
    assert pvalue > ALPHA, f"chi-square rejects p (p-value {pvalue:.3g})"
    variation = 0.5 * float(np.abs(counts / DRAWS - p.double().numpy()).sum())
    assert variation < 0.01, f"total variation {variation:.3g}"


def test_the_sampling_test_rejects_a_race_on_uniforms():
    p = long_tail()
    assert chi_square_pvalue(draw_counts(p, uniforms_instead=True), p) < ALPHA


def test_the_race_is_gumbel_max():
    p = long_tail()
    for key in range(200):
        g = noise.gumbel(5, key, size=p.shape[0])
        assert noise.race(p, noise.exponentials(5, key, size=p.shape[0])) == int(torch.argmax(p.double().log() + g))


def test_an_entry_does_not_depend_on_the_vector_length():
    long = noise.exponentials(1, 2, 3, size=49_152)
    for size in (1, 511, 512, 2048, 30_000):
        assert torch.equal(noise.exponentials(1, 2, 3, size=size), long[:size])
    assert bool((long > 0).all()) and bool(torch.isfinite(long).all())
    assert not torch.equal(noise.exponentials(1, 2, 4, size=512), long[:512])


def test_uniforms_have_53_bits_and_follow_the_key():
    values = [noise.uniform(7, i) for i in range(20_000)]
    assert all(0.0 <= u < 1.0 for u in values)
    assert any(u * 2**24 != int(u * 2**24) for u in values)  # finer than float32's steps
    assert noise.uniform(7, 3) == values[3] and noise.uniform(7, 3, 0) != values[3]
    mean = math.fsum(values) / len(values)
    assert abs(mean - 0.5) < 5 * math.sqrt(1 / 12 / len(values))
