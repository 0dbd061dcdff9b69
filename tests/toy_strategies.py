"""One Hypothesis strategy per built-in policy and proposer, for the exact test.

`POLICY_STRATEGIES` / `PROPOSER_STRATEGIES` hold one strategy per registered strategy name; a test
fails when a registered policy or proposer has none, so nothing escapes the exact test. The generic
pieces (toy pairs, sampling settings, cases) are `specdec.testing`'s; this mapping names every
built-in, so it stays here: the core package does not import `specdec.strategies`.
"""

from __future__ import annotations

from typing import Callable

from hypothesis import strategies as st

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
from specdec.strategies.policies.pacer.network import PacerConfig, PreVerifier
from specdec.strategies.proposers import DraftModelProposer, PromptLookupProposer
from specdec.testing import LosslessCase, ToyPair
from specdec.testing import lossless_cases as generic_lossless_cases
from tests.eagle_strategies import eagle_factories
from tests.pool_strategies import ouroboros_factories

_caps = st.integers(1, 4)

# an entry is a strategy, or a function of the toy pair giving one (for policies sized to the draft)
POLICY_STRATEGIES: dict[str, st.SearchStrategy | Callable[[ToyPair], st.SearchStrategy]] = {
    "fixed": st.builds(FixedPolicy, k=st.integers(1, 4)),
    "heuristic": st.builds(HeuristicPolicy, k=st.integers(1, 4), max_draft=_caps, persist=st.booleans()),
    "confidence": st.builds(
        ConfidencePolicy, threshold=st.floats(0.0, 1.0), max_draft=_caps, adapt=st.booleans(), history=st.integers(6, 20)
    ),
    "svip": st.builds(SvipPolicy, h=st.floats(0.0, 1.0), gamma_s=st.floats(0.01, 1.0), max_draft=_caps),
    "adaedl": _caps.flatmap(
        lambda cap: st.builds(
            AdaEdlPolicy,
            gamma=st.floats(0.01, 1.0),
            initial_lambda=st.floats(0.0, 1.0),
            eps=st.sampled_from([0.01, 0.2]),
            alpha=st.floats(0.0, 1.0),
            min_draft=st.integers(0, min(2, cap)),  # at most max_draft (a larger one is refused)
            max_draft=st.just(cap),
        )
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
        explore_share=st.floats(0.0, 1.0),
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
    "eagle": eagle_factories,
}


def lossless_cases(policy_name: str, proposer_name: str) -> st.SearchStrategy[LosslessCase]:
    """Random exact-test cases for a built-in policy and proposer, by registered name."""
    entry = POLICY_STRATEGIES[policy_name]
    policies = (lambda pair: entry) if isinstance(entry, st.SearchStrategy) else entry
    return generic_lossless_cases(policies, PROPOSER_STRATEGIES[proposer_name])
