"""The sampler draws exactly to float64 resolution at a 49k vocabulary, long tail included, and
each draw is a function of its key (seed, sequence, site) alone.

Each test fails with float32 draws: near a cumulative sum of 1 a float32 sum moves in steps of
6e-8, so small weights are rounded away (never drawn) or lumped onto their neighbours, and a
float32 uniform is a multiple of 2**-24.
"""

from __future__ import annotations

import math

import torch

from specdec import noise
from specdec.samplers import Purpose, Site, TorchSampler, cumulative_weights

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
    sampler = TorchSampler(seed=5)
    for position in range(20_000):  # a float32 table would part from this one about once in 2,000 draws
        site = Site(position, Purpose.EMIT, start=position)
        u = noise.uniform(5, 0, position, position, int(Purpose.EMIT))  # the key: seed, sequence, start, position, purpose
        assert sampler.categorical(weights, site) == int(torch.searchsorted(table, u * table[-1], right=True))


def test_acceptance_coins_resolve_probabilities_below_float32_steps():
    # a float32 uniform is a multiple of 2**-24: a coin of 2**-26 could only come up as 0 or 2**-24
    sampler = TorchSampler(seed=3)
    uniforms = [sampler._uniform(Site(i, Purpose.ACCEPT)) for i in range(2_000)]
    assert any(u * 2**24 != int(u * 2**24) for u in uniforms)


def test_a_draw_does_not_depend_on_the_draws_made_before_it():
    weights = zipf_tail(512)
    sites = [Site(40 + i, purpose, start=40) for i in range(6) for purpose in (Purpose.DRAFT, Purpose.EMIT, Purpose.COUPLED)]
    fresh = [TorchSampler(seed=11) for _ in sites]
    alone = [s.categorical(weights, site) for s, site in zip(fresh, sites)]
    coins = [TorchSampler(seed=11).accept(0.5, Site(40 + i, Purpose.ACCEPT, start=40)) for i in range(6)]
    busy = TorchSampler(seed=11)
    for i in range(37):  # earlier rounds made any number of draws
        busy.categorical(weights, Site(i, Purpose.EMIT, start=i))
        busy.categorical(weights, Site(i, Purpose.COUPLED, start=i))
        busy.accept(0.3, Site(i, Purpose.ACCEPT, start=i))
    assert [busy.categorical(weights, site) for site in reversed(sites)] == alone[::-1]
    assert [busy.accept(0.5, Site(40 + i, Purpose.ACCEPT, start=40)) for i in range(6)] == coins


def test_each_part_of_the_key_gives_other_draws():
    weights = zipf_tail(512)
    base = Site(30, Purpose.DRAFT, start=28)
    variants = [base, Site(31, Purpose.DRAFT, 28), Site(30, Purpose.EMIT, 28), Site(30, Purpose.DRAFT, 29)]
    uniforms = [TorchSampler(seed=2)._uniform(site) for site in variants] + [TorchSampler(seed=3)._uniform(base)]
    assert len(set(uniforms)) == len(uniforms)
    # coupled draws are keyed by the position alone: the same token whatever the round's start
    shared = {TorchSampler(seed=2).categorical(weights, Site(30, Purpose.COUPLED, start)) for start in range(20, 31)}
    assert len(shared) == 1


def test_a_shared_sampler_moves_to_a_new_sequence_at_each_generation():
    weights = zipf_tail(512)
    site = Site(5, Purpose.EMIT)
    shared, fresh = TorchSampler(seed=4), TorchSampler(seed=4)
    shared.begin()
    first = [shared.categorical(weights, Site(i, Purpose.EMIT)) for i in range(40)]
    fresh.begin()
    assert [fresh.categorical(weights, Site(i, Purpose.EMIT)) for i in range(40)] == first
    shared.begin()
    assert shared.sequence == 1
    assert [shared.categorical(weights, Site(i, Purpose.EMIT)) for i in range(40)] != first
    assert TorchSampler(seed=4).categorical(weights, site) == first[5]  # no begin(): sequence 0


def test_an_unseeded_sampler_takes_its_seed_from_torch():
    torch.manual_seed(123)
    first = TorchSampler(seed=None)
    draws = [first.categorical(zipf_tail(64), Site(i, Purpose.EMIT)) for i in range(30)]
    torch.manual_seed(123)
    second = TorchSampler(seed=None)
    assert [second.categorical(zipf_tail(64), Site(i, Purpose.EMIT)) for i in range(30)] == draws
    assert first.seed == second.seed is not None
