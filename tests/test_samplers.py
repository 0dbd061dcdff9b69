"""The sampler draws exactly to float64 resolution at a 49k vocabulary, long tail included.

Each test fails with float32 draws: near a cumulative sum of 1 a float32 sum moves in steps of
6e-8, so small weights are rounded away (never drawn) or lumped onto their neighbours, and a
float32 uniform is a multiple of 2**-24.
"""

from __future__ import annotations

import math

import torch

from specdec.samplers import TorchSampler, cumulative_weights

VOCAB = 49_152


def zipf_tail(vocab: int = VOCAB) -> torch.Tensor:
    """A next-token distribution shaped like a language model's: p_i proportional to 1 / (i + 1)^1.1, in float32."""
    ranks = torch.arange(1, vocab + 1, dtype=torch.float64)
    weights = ranks.pow(-1.1)
    return (weights / weights.sum()).float()


def test_the_inverse_cdf_is_the_exact_distribution_in_total_variation():
    weights = zipf_tail()
    cumulative = cumulative_weights(weights)
    drawn = torch.diff(cumulative, prepend=cumulative.new_zeros(1)) / cumulative[-1]  # what a uniform u picks
    exact = [float(w) for w in weights.double()]
    total = math.fsum(exact)
    variation = 0.5 * math.fsum(abs(d - e / total) for d, e in zip(drawn.tolist(), exact))
    assert variation < 1e-12, f"total variation {variation:.3g} from the exact distribution"
    assert bool((drawn > 0).all()), f"{int((drawn <= 0).sum())} tokens with p > 0 can never be drawn"


def test_a_draw_inverts_that_table_with_a_float64_uniform():
    weights = zipf_tail()
    table = cumulative_weights(weights)
    sampler, twin = TorchSampler(seed=5), torch.Generator().manual_seed(5)
    for _ in range(20_000):  # a float32 table would part from this one about once in 2,000 draws
        u = torch.rand((), dtype=torch.float64, generator=twin)
        assert sampler.categorical(weights) == int(torch.searchsorted(table, u * table[-1], right=True))


def test_acceptance_coins_resolve_probabilities_below_float32_steps():
    # a float32 uniform is a multiple of 2**-24: a coin of 2**-26 could only come up as 0 or 2**-24
    sampler = TorchSampler(seed=3)
    uniforms = [float(sampler._uniform()) for _ in range(2_000)]
    assert any(u * 2**24 != int(u * 2**24) for u in uniforms)
