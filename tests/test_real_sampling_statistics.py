"""At T > 0 the speculative output on the real tiny pair follows the target's exact distribution.

For the first two generated tokens the target's exact joint distribution p(t1) p(t2 | t1) is
computed from the model itself. N generations are binned by (t1, t2) (bins expected below 5 are
pooled) and a chi-square goodness-of-fit test at alpha = 1e-3 must not reject. The same test,
run on a verifier with a planted bug (bonus token drawn from q), must reject: it has power, not
just a loose tolerance. Subtler planted bugs (min(1, q/p), residual q - p) shift these two tokens
too little for 3,000 samples on a pair that agrees 79% of the time; the exact-enumeration test
catches those.
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from specdec import Decoder, TorchSampler
from specdec.samplers import Purpose, Site
from specdec.sampling import SamplingConfig, warp
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer
from tests.models import real_model
from tests.test_lossless_exact import BonusFromQ

SAMPLES = 3000
ALPHA = 1e-3
PROMPT = "Once upon a time, there was a"


def exact_first_two(target, ids: list[int], sampling: SamplingConfig) -> dict[tuple[int, int], float]:
    model = target.model
    with torch.inference_mode():
        p1 = warp(model(torch.tensor([ids])).logits[0, -1].float(), sampling)
        firsts = [int(t) for t in torch.nonzero(p1 > 1e-7).flatten()]
        batch = torch.tensor([ids + [t] for t in firsts])
        p2 = warp(model(batch).logits[:, -1].float(), sampling)
    return {(t1, t2): float(p1[t1] * p2[i, t2]) for i, t1 in enumerate(firsts) for t2 in torch.nonzero(p2[i] > 0).flatten().tolist()}


def chi_square_pvalue(samples: list[tuple[int, int]], expected: dict[tuple[int, int], float]) -> float:
    n = len(samples)
    counts: dict[tuple[int, int], int] = {}
    for s in samples:
        counts[s] = counts.get(s, 0) + 1
    big = [key for key, p in expected.items() if p * n >= 5]
    observed = [counts.get(key, 0) for key in big]
    wanted = [expected[key] * n for key in big]
    observed.append(n - sum(observed))
    wanted.append(n - sum(wanted))
    return float(chisquare(observed, wanted).pvalue)


def draw(decoder: Decoder, ids: list[int], sampling: SamplingConfig) -> list[tuple[int, int]]:
    sampler = TorchSampler(seed=1234)
    out = []
    for _ in range(SAMPLES):
        got = decoder.generate(ids, 2, temperature=sampling.temperature, top_k=sampling.top_k, sampler=sampler).ids
        out.append((got[0], got[1]))
    return out


@pytest.mark.exhaustive
@pytest.mark.parametrize("sampling", [SamplingConfig(1.0), SamplingConfig(0.8, top_k=20)], ids=["T1", "T0.8-top20"])
@pytest.mark.parametrize("mode", ["speculative", "target-only"])
def test_first_two_tokens_follow_the_target(sampling, mode):
    target = real_model("stories260K")
    proposer = DraftModelProposer(real_model("stories260K-draft")) if mode == "speculative" else None
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(2))
    ids = decoder.encode(PROMPT)
    pvalue = chi_square_pvalue(draw(decoder, ids, sampling), exact_first_two(target, ids, sampling))
    assert pvalue > ALPHA, f"chi-square rejects the target distribution (p = {pvalue:.2g}, {SAMPLES} samples)"


@pytest.mark.exhaustive
def test_the_statistical_test_rejects_a_broken_verifier():
    target = real_model("stories260K")
    decoder = Decoder(target, proposer=DraftModelProposer(real_model("stories260K-draft")), policy=FixedPolicy(2), verifier=BonusFromQ())
    sampling = SamplingConfig(1.0)
    ids = decoder.encode(PROMPT)
    assert chi_square_pvalue(draw(decoder, ids, sampling), exact_first_two(target, ids, sampling)) < ALPHA


def test_same_seed_same_output():
    decoder = Decoder(real_model("stories260K"), proposer=DraftModelProposer(real_model("stories260K-draft")), policy=FixedPolicy(3))
    runs = [decoder.generate(PROMPT, 40, temperature=0.9, top_p=0.9, seed=7).ids for _ in range(2)]
    other = decoder.generate(PROMPT, 40, temperature=0.9, top_p=0.9, seed=8).ids
    assert runs[0] == runs[1]
    assert other != runs[0]


@pytest.mark.exhaustive
def test_trimmed_draft_head_sampling_follows_the_target():
    """q is 0 outside the kept tokens; the p/q rule must still give exactly p."""
    target = real_model("stories260K")
    decoder = Decoder(target, proposer=DraftModelProposer(real_model("stories260K-draft"), head_tokens=200), policy=FixedPolicy(2))
    sampling = SamplingConfig(1.0)
    ids = decoder.encode(PROMPT)
    assert chi_square_pvalue(draw(decoder, ids, sampling), exact_first_two(target, ids, sampling)) > ALPHA


@pytest.mark.exhaustive
def test_int8_draft_sampling_follows_the_target():
    """q is the int8 draft's own warped distribution, the one its token was drawn from."""
    target = real_model("stories260K")
    decoder = Decoder(target, proposer=DraftModelProposer(real_model("stories260K-draft"), int8=True), policy=FixedPolicy(2))
    sampling = SamplingConfig(1.0)
    ids = decoder.encode(PROMPT)
    assert chi_square_pvalue(draw(decoder, ids, sampling), exact_first_two(target, ids, sampling)) > ALPHA


def test_torch_sampler_draws_each_index_with_its_weight():
    weights = torch.tensor([0.1, 0.0, 0.3, 0.6, 0.0, 0.0])
    sampler = TorchSampler(seed=7)
    draws = 20000
    counts = torch.bincount(torch.tensor([sampler.categorical(weights * 3.0, Site(i, Purpose.EMIT)) for i in range(draws)]), minlength=6)
    assert counts[1] == counts[4] == counts[5] == 0  # zero weights are never drawn, the last one included
    expected = weights * draws
    sigma = (draws * weights * (1 - weights)).sqrt()
    assert torch.all((counts[[0, 2, 3]] - expected[[0, 2, 3]]).abs() < 5 * sigma[[0, 2, 3]])
    # the same seed gives the same draws
    first, second = TorchSampler(seed=7), TorchSampler(seed=7)
    assert [first.categorical(weights, Site(i, Purpose.EMIT)) for i in range(50)] == [second.categorical(weights, Site(i, Purpose.EMIT)) for i in range(50)]
