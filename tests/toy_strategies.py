"""Hypothesis strategies that build whole objects: toy models, sampling settings, policies, cases.

`POLICY_STRATEGIES` / `PROPOSER_STRATEGIES` hold one strategy per registered strategy name; a test
fails when a registered policy or proposer has none, so nothing escapes the exact test.
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
from hypothesis import strategies as st

from specdec.integrations.toy import ToyModel
from specdec.strategies.policies.pacer.network import PacerConfig, PreVerifier
from specdec.sampling import SamplingConfig
from specdec.strategies.policies import (
    AdaEdlPolicy,
    ConfidencePolicy,
    CostAwarePolicy,
    FixedPolicy,
    HeuristicPolicy,
    OraclePolicy,
    PacerPolicy,
    SvipPolicy,
)
from specdec.strategies.proposers import DraftModelProposer, PromptLookupProposer
from tests.pool_strategies import ouroboros_factories

# new tokens allowed per vocabulary size, so that the random tree stays enumerable
MAX_NEW_BY_VOCAB = {3: 4, 4: 3, 5: 2}


@st.composite
def probability_rows(draw, vocab: int) -> list[float]:
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


@st.composite
def toy_models(draw, vocab: int, order: int, eos: frozenset[int], name: str) -> ToyModel:
    table = {key: draw(probability_rows(vocab)) for key in _contexts(vocab, order)}
    return ToyModel.from_probabilities(table, vocab, order=order, eos_token_ids=eos, name=name)


@st.composite
def sampling_configs(draw, vocab: int) -> SamplingConfig:
    if draw(st.booleans()):
        return SamplingConfig(0.0)
    temperature = draw(st.sampled_from([0.6, 1.0, 1.5]))
    top_k = draw(st.one_of(st.none(), st.integers(1, vocab)))
    top_p = draw(st.one_of(st.none(), st.sampled_from([0.5, 0.8, 1.0])))
    return SamplingConfig(temperature, top_k, top_p)


@attrs.frozen
class ToyPair:
    target: ToyModel
    draft: ToyModel
    vocab: int
    eos: frozenset[int]


@st.composite
def toy_pairs(draw) -> ToyPair:
    vocab = draw(st.integers(3, 5))
    eos = frozenset(draw(st.sampled_from([(), (0,)])))
    target = draw(toy_models(vocab, draw(st.integers(1, 2)), eos, "toy-target"))
    draft = draw(toy_models(vocab, draw(st.integers(1, 2)), eos, "toy-draft"))
    return ToyPair(target, draft, vocab, eos)


_caps = st.integers(1, 4)

# an entry is a strategy, or a function of the toy pair giving one (for policies sized to the draft)
POLICY_STRATEGIES: dict[str, st.SearchStrategy | Callable[[ToyPair], st.SearchStrategy]] = {
    "fixed": st.builds(FixedPolicy, k=st.integers(1, 4)),
    "heuristic": st.builds(HeuristicPolicy, k=st.integers(1, 4), max_draft=_caps, persist=st.booleans()),
    "confidence": st.builds(
        ConfidencePolicy, threshold=st.floats(0.0, 1.0), max_draft=_caps, adapt=st.booleans(), history=st.integers(6, 20)
    ),
    "svip": st.builds(SvipPolicy, h=st.floats(0.0, 1.0), gamma_s=st.floats(0.01, 1.0), max_draft=_caps),
    "adaedl": st.builds(
        AdaEdlPolicy,
        gamma=st.floats(0.01, 1.0),
        initial_lambda=st.floats(0.0, 1.0),
        eps=st.sampled_from([0.01, 0.2]),
        alpha=st.floats(0.0, 1.0),
        min_draft=st.integers(0, 2),
        max_draft=_caps,
    ),
    # measure=False: wall-clock timings would make replays of one random branch disagree
    "auto": st.builds(
        CostAwarePolicy,
        max_draft=_caps,
        draft_cost=st.floats(0.0, 1.5),
        width_cost=st.floats(0.0, 0.5),
        prior_acceptance=st.floats(0.0, 1.0),
        prior_weight=st.floats(0.5, 8.0),
        memory=st.integers(1, 50),
        catchup_cost=st.floats(0.0, 0.1),
        carry=st.floats(0.0, 8.0),
        explore_share=st.floats(0.0, 1.0),
        margin=st.floats(0.0, 0.5),
        optimism=st.floats(0.0, 2.0),
        measure=st.just(False),
    ),
    # random continuations: the output stays exact whatever the oracle knows (it decides before draws)
    "oracle": st.builds(OraclePolicy, continuation=st.lists(st.integers(0, 4), min_size=3, max_size=10), max_draft=_caps),
    # a randomly initialised pre-verifier sized for the toy draft (its hidden state is a one-hot of the vocabulary)
    "pacer": lambda pair: st.builds(
        lambda arch, seed, **params: PacerPolicy.from_verifier(
            PreVerifier.random(PacerConfig(hidden_size=pair.vocab, width=8, arch=arch), seed), **params
        ),
        arch=st.sampled_from(["mlp", "attention"]),
        seed=st.integers(0, 1000),
        threshold=st.floats(0.0, 1.0),
        block_size=st.integers(1, 3),
        max_draft=_caps,
        rule=st.sampled_from(["threshold", "cost"]),
    ),
}

# each entry maps a toy pair to a strategy of proposer factories (fresh state per enumeration run)
PROPOSER_STRATEGIES: dict[str, Callable[[ToyPair], st.SearchStrategy]] = {
    "draft": lambda pair: st.just(lambda: DraftModelProposer(pair.draft)),
    "prompt-lookup": lambda pair: st.builds(
        lambda n, k, match: lambda: PromptLookupProposer(max_ngram=n, num_tokens=k, match=match),
        st.integers(1, 3),
        st.integers(1, 4),
        st.sampled_from(["recent", "leftmost"]),
    ),
    "ouroboros": ouroboros_factories,
}


@attrs.frozen
class LosslessCase:
    pair: ToyPair
    prompt: tuple[int, ...]
    max_new_tokens: int
    sampling: SamplingConfig
    policy: object  # a template: each run gets a deep copy
    make_proposer: Callable = attrs.field(eq=False, repr=False)


@st.composite
def lossless_cases(draw, policy_name: str, proposer_name: str) -> LosslessCase:
    pair = draw(toy_pairs())
    prompt = tuple(draw(st.lists(st.integers(1, pair.vocab - 1), min_size=1, max_size=2)))
    max_new = draw(st.integers(2, MAX_NEW_BY_VOCAB[pair.vocab]))
    sampling = draw(sampling_configs(pair.vocab))
    policy_strategy = POLICY_STRATEGIES[policy_name]
    policy = draw(policy_strategy if isinstance(policy_strategy, st.SearchStrategy) else policy_strategy(pair))
    make_proposer = draw(PROPOSER_STRATEGIES[proposer_name](pair))
    return LosslessCase(pair, prompt, max_new, sampling, policy, make_proposer)


def finite_or_none(x: float) -> bool:
    return x is None or math.isfinite(x)
