"""Toy model pairs and sampling settings small enough to enumerate every random branch.

Vocabularies of 3 to 5 tokens with exact probability tables of order 1 or 2: a whole generation's
random tree (every draft sample, acceptance coin, residual and bonus draw) stays a few thousand
leaves at most, so `enumerate_outputs` can follow all of it.
"""

from __future__ import annotations

import attrs
import torch
from hypothesis import strategies as st

from specdec.integrations.toy import ToyModel
from specdec.sampling import SamplingConfig

# new tokens allowed per vocabulary size, so that the random tree stays enumerable
MAX_NEW_BY_VOCAB = {3: 4, 4: 3, 5: 2}


@st.composite
def probability_rows(draw, vocab: int) -> list[float]:
    """A next-token distribution over `vocab` tokens, with some exact zeros."""
    weights = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.05, 1.0)), min_size=vocab, max_size=vocab))
    if sum(weights) == 0:
        weights[draw(st.integers(0, vocab - 1))] = 1.0
    total = sum(weights)
    return [w / total for w in weights]


def _contexts(vocab: int, order: int) -> list[tuple[int, ...]]:
    keys: list[tuple[int, ...]] = [()]
    frontier: list[tuple[int, ...]] = [()]
    for _ in range(order):
        frontier = [key + (t,) for key in frontier for t in range(vocab)]
        keys.extend(frontier)
    return keys


def seeded_toy(vocab: int, order: int, seed: int = 0, scale: float = 1.0) -> ToyModel:
    """A toy model whose logits for every context are `scale` times standard normal draws from
    `seed`: one fixed model, for tests that need a particular one rather than all of them."""
    generator = torch.Generator().manual_seed(seed)
    rows = {key: (scale * torch.randn(vocab, generator=generator)).tolist() for key in _contexts(vocab, order)}
    return ToyModel(rows, vocab, order=order)


@st.composite
def toy_models(draw, vocab: int, order: int, eos: frozenset[int], name: str) -> ToyModel:
    """A toy model with a random table for every context of up to `order` tokens."""
    table = {key: draw(probability_rows(vocab)) for key in _contexts(vocab, order)}
    return ToyModel.from_probabilities(table, vocab, order=order, eos_token_ids=eos, name=name)


@st.composite
def sampling_configs(draw, vocab: int) -> SamplingConfig:
    """Greedy half the time; otherwise a temperature with or without top-k and top-p."""
    if draw(st.booleans()):
        return SamplingConfig(0.0)
    temperature = draw(st.sampled_from([0.6, 1.0, 1.5]))
    top_k = draw(st.one_of(st.none(), st.integers(1, vocab)))
    top_p = draw(st.one_of(st.none(), st.sampled_from([0.5, 0.8, 1.0])))
    return SamplingConfig(temperature, top_k, top_p)


@attrs.frozen
class ToyPair:
    """A target and a draft over one vocabulary, with the end tokens they share."""

    target: ToyModel
    draft: ToyModel
    vocab: int
    eos: frozenset[int]


@st.composite
def toy_pairs(draw) -> ToyPair:
    """Independent random target and draft tables (vocabulary 3-5, order 1-2, with or without an end token)."""
    vocab = draw(st.integers(3, 5))
    eos = frozenset(draw(st.sampled_from([(), (0,)])))
    target = draw(toy_models(vocab, draw(st.integers(1, 2)), eos, "toy-target"))
    draft = draw(toy_models(vocab, draw(st.integers(1, 2)), eos, "toy-draft"))
    return ToyPair(target, draft, vocab, eos)
