"""The bounded phrase pool: LRU order, bounds, prefix merging, JSON round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specdec.errors import ConfigurationError
from specdec.strategies.proposers.phrase_pool import PhrasePool


def test_newest_first_and_oldest_phrase_dropped_per_key():
    pool = PhrasePool(max_phrases=2, phrase_length=3)
    pool.add(1, [2, 3])
    pool.add(1, [4, 5])
    pool.add(1, [2, 3])  # re-inserting refreshes it
    pool.add(1, [6, 7])  # full: the oldest ([4, 5]) goes
    assert pool.get(1) == [(6, 7), (2, 3)]
    assert pool.get(1, limit=1) == [(6, 7)]
    assert pool.get(9) == []
    assert len(pool) == 2


def test_phrases_are_truncated_and_prefixes_merged():
    pool = PhrasePool(phrase_length=3)
    pool.add(1, [2, 3, 4, 5, 6])
    assert pool.get(1) == [(2, 3, 4)]
    pool.add(1, [2, 3])  # a prefix of a held phrase only refreshes it
    assert pool.get(1) == [(2, 3, 4)]
    pool.add(2, [5])
    pool.add(2, [5, 6, 7])  # extends a held phrase: replaces it
    assert pool.get(2) == [(5, 6, 7)]
    assert len(pool) == 2


def test_least_recently_used_key_is_evicted():
    pool = PhrasePool(max_keys=2)
    pool.add(1, [5])
    pool.add(2, [5])
    pool.get(1)  # reading key 1 makes key 2 the least recently used
    pool.add(3, [5])
    assert sorted(pool.keys) == [1, 3]
    assert len(pool) == 2


def test_replace_swaps_a_phrase_for_its_correction():
    pool = PhrasePool()
    pool.add(1, [2, 3])
    pool.add(1, [8, 9])
    pool.replace(1, [2, 3], [2, 4])
    assert pool.get(1) == [(2, 4), (8, 9)]


def test_add_sequence_indexes_each_token_with_what_follows():
    pool = PhrasePool(phrase_length=2)
    pool.add_sequence([1, 2, 3, 4], min_length=2)
    assert pool.get(1) == [(2, 3)] and pool.get(2) == [(3, 4)] and pool.get(3) == []


def test_json_round_trip_keeps_contents_and_recency(tmp_path):
    pool = PhrasePool(max_phrases=3, max_keys=5, phrase_length=4)
    for key, phrase in [(1, [2, 3]), (2, [3]), (1, [4, 5, 6]), (7, [1, 1, 1, 1])]:
        pool.add(key, phrase)
    path = tmp_path / "pool.json"
    pool.save(path)
    loaded = PhrasePool.load(path)
    assert loaded.to_dict() == pool.to_dict()
    assert loaded.get(1) == [(4, 5, 6), (2, 3)]
    assert loaded.max_token() == 7
    smaller = PhrasePool.load(path, max_keys=1)  # bounds can be overridden on load
    assert smaller.keys == [7]


def test_bad_files_are_clear_errors(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        PhrasePool.load(path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ConfigurationError, match="not a specdec phrase pool"):
        PhrasePool.load(path)
    with pytest.raises(ConfigurationError):
        PhrasePool(max_phrases=0)


@settings(deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 30), st.lists(st.integers(0, 9), min_size=1, max_size=8)), max_size=300))
def test_bounds_always_hold(ops):
    pool = PhrasePool(max_phrases=3, max_keys=4, phrase_length=5)
    for key, phrase in ops:
        pool.add(key, phrase)
        assert len(pool.keys) <= 4
        assert len(pool) == sum(len(p) for _, p in pool.items()) <= 12
        assert pool.stored_tokens() <= 4 * 3 * 5
