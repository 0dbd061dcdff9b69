"""`warp`'s rules at their edges: ties with the k-th token and at the top-p boundary (against
transformers' warpers), a top-p or a temperature small enough to leave one token, and a sampler
that refuses weights it cannot draw from instead of returning an id past the vocabulary."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from specdec.cli import main
from specdec.errors import NonFiniteLogitsError
from specdec.samplers import Purpose, Site, TorchSampler
from specdec.sampling import SamplingConfig, warp
from specdec.testing.reference import reference_warp
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET, tiny

# few distinct values, so that ties are the rule rather than the exception
TIED_LOGITS = st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]), min_size=2, max_size=12)


def kept(probabilities: torch.Tensor) -> set[int]:
    return set(torch.nonzero(probabilities > 0).flatten().tolist())


def their_kept(warper, logits: list[float]) -> set[int]:
    scores = warper(torch.zeros(1, 1, dtype=torch.long), torch.tensor([logits]))[0]
    return set(torch.nonzero(scores > -math.inf).flatten().tolist())


@given(logits=TIED_LOGITS, k=st.integers(1, 12))
def test_top_k_keeps_every_token_tied_with_the_kth_as_transformers_does(logits, k):
    ours = warp(torch.tensor(logits), SamplingConfig(1.0, k, None))
    assert kept(ours) == their_kept(TopKLogitsWarper(k), logits)
    assert ours.tolist() == pytest.approx(reference_warp(logits, 1.0, k, None), abs=1e-6)


def test_top_k_on_a_tie_with_the_kth_keeps_the_whole_tie():
    probabilities = warp(torch.tensor([3.0, 1.0, 1.0, 1.0, 0.0]), SamplingConfig(1.0, 2, None))
    assert kept(probabilities) == {0, 1, 2, 3}


@given(logits=TIED_LOGITS, top_p=st.floats(0.01, 0.99))
def test_top_p_keeps_what_transformers_keeps_plus_the_tokens_tied_with_its_least_likely(logits, top_p):
    """transformers keeps the tokens its ascending sort puts last, so of tokens tied at the boundary
    it keeps an arbitrary subset; the rule here keeps them all, and is otherwise the same."""
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=-1).sort(descending=True).values
    assume(all(abs(float(mass) - top_p) > 1e-4 for mass in probs.cumsum(0)))  # no boundary that rounding decides
    theirs = their_kept(TopPLogitsWarper(top_p), logits)
    ours = warp(torch.tensor(logits), SamplingConfig(1.0, None, top_p))
    least = min(logits[i] for i in theirs)
    assert kept(ours) == {i for i, x in enumerate(logits) if x >= least}
    assert ours.tolist() == pytest.approx(reference_warp(logits, 1.0, None, top_p), abs=1e-6)


def test_top_p_on_a_tie_at_the_boundary_keeps_the_whole_tie():
    assert kept(warp(torch.tensor([0.0, 0.0, 0.0, 0.0]), SamplingConfig(1.0, None, 0.3))) == {0, 1, 2, 3}
    assert kept(warp(torch.tensor([2.0, 1.0, 1.0, 0.0]), SamplingConfig(1.0, None, 0.6))) == {0, 1, 2}


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1e-6), (1.0, 1e-300), (1e-45, None), (1e-300, 0.5), (5e-324, None)])
@pytest.mark.parametrize("vocab", [1, 8, 512])
def test_a_warp_that_leaves_one_token_keeps_the_most_likely(temperature, top_p, vocab):
    logits = torch.randn(3, vocab, generator=torch.Generator().manual_seed(vocab)) * 10
    probabilities = warp(logits, SamplingConfig(temperature, None, top_p))
    assert torch.equal(probabilities, torch.nn.functional.one_hot(logits.argmax(-1), vocab).float())
    assert reference_warp(logits[0].tolist(), temperature, None, top_p) == probabilities[0].tolist()
    for purpose in (Purpose.EMIT, Purpose.COUPLED):
        assert TorchSampler(0).categorical(probabilities[0], Site(3, purpose)) == int(logits[0].argmax())


def test_a_vanishing_temperature_spreads_over_tied_maxima():
    probabilities = warp(torch.tensor([1.0, 5.0, -3.0, 5.0]), SamplingConfig(1e-45))
    assert probabilities.tolist() == [0.0, 0.5, 0.0, 0.5]


@pytest.mark.parametrize("purpose", [Purpose.EMIT, Purpose.COUPLED])
@pytest.mark.parametrize("weights", [[0.0, 0.0, 0.0], [math.nan, 0.5, 0.5], [math.inf, 0.0, 1.0]])
def test_the_sampler_refuses_weights_it_cannot_draw_from(weights, purpose):
    with pytest.raises(NonFiniteLogitsError, match="cannot draw a token"):
        TorchSampler(0).categorical(torch.tensor(weights), Site(0, purpose))


@pytest.mark.parametrize("sampling", [["--top-p", "1e-6"], ["--temperature", "1e-45"]], ids=" ".join)
def test_the_cli_at_a_warp_that_leaves_one_token_generates_the_greedy_text(sampling, capsys):
    run = ["generate", "Once upon", "--target", tiny(TINY_TARGET), "--draft", tiny(TINY_DRAFT), "--max-new-tokens", "12", "--json"]
    assert main(run) == 0
    greedy = json.loads(capsys.readouterr().out)["ids"]
    temperature = [] if "--temperature" in sampling else ["--temperature", "1"]
    assert main(run + temperature + sampling) == 0
    assert json.loads(capsys.readouterr().out)["ids"] == greedy
