"""Hypothesis strategies for the phrase-pool proposers (entries of PROPOSER_STRATEGIES).

Each draw is a zero-argument factory: every enumeration run gets a fresh proposer and a fresh,
identically pre-seeded pool, so replays of one random branch behave the same.
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import strategies as st

from specdec.strategies.proposers.phrase_pool import PhrasePool
from specdec.strategies.proposers import OuroborosProposer


def seeded_pool(phrases: list[tuple[int, list[int]]], max_phrases: int, phrase_length: int) -> PhrasePool:
    pool = PhrasePool(max_phrases=max_phrases, max_keys=64, phrase_length=phrase_length)
    for key, phrase in phrases:
        pool.add(key, phrase)
    return pool


def ouroboros_factories(pair: Any) -> st.SearchStrategy[Callable[[], OuroborosProposer]]:
    """Random pools over the toy vocabulary, phrase lengths, n-gram sizes and branch settings."""
    token = st.integers(0, pair.vocab - 1)
    phrases = st.lists(st.tuples(token, st.lists(token, min_size=1, max_size=3)), max_size=10)

    def build(seed, max_phrases, phrase_length, max_ngram, branches, branch_length, draft_phrases, adaptive, pool_branches, copy_candidates):
        return lambda: OuroborosProposer(
            pair.draft,
            phrase_length=phrase_length,
            max_ngram=max_ngram,
            branches=branches,
            branch_length=branch_length,
            draft_phrases=draft_phrases,
            adaptive=adaptive,
            pool_branches=pool_branches,
            copy_candidates=copy_candidates,
            pool=seeded_pool(seed, max_phrases, phrase_length),
        )

    return st.builds(
        build,
        phrases,
        st.integers(1, 3),
        st.integers(1, 3),
        st.integers(1, 2),
        st.integers(0, 3),
        st.integers(1, 3),
        st.integers(1, 2),
        st.booleans(),
        st.booleans(),
        st.integers(1, 3),
    )
