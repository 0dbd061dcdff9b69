"""The incremental n-gram index behind prompt lookup and Ouroboros."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from specdec.ngram import NgramIndex


def brute_find(seq: list[int], max_n: int, match: str) -> int | None:
    """Reference: scan every window, longest n first (transformers' prompt lookup, and its mirror)."""
    for n in range(min(max_n, len(seq)), 0, -1):
        tail = seq[len(seq) - n:]
        starts = [i + n for i in range(len(seq) - n) if seq[i:i + n] == tail]  # excludes the tail itself
        if starts:
            return starts[0] if match == "leftmost" else starts[-1]
    return None


@settings(deadline=None)
@given(
    seq=st.lists(st.integers(0, 4), min_size=1, max_size=40),
    cuts=st.lists(st.integers(1, 40), max_size=4),
    max_n=st.integers(1, 3),
    match=st.sampled_from(["recent", "leftmost"]),
)
def test_incremental_index_finds_what_a_full_scan_finds(seq, cuts, max_n, match):
    index = NgramIndex(max_n)
    for cut in sorted(c for c in cuts if c <= len(seq)) + [len(seq)]:
        index.update(seq[:cut])  # grows in steps, like the context round by round
        got = index.find(seq[:cut], match=match)
        assert got == brute_find(seq[:cut], max_n, match)


def test_update_only_reads_new_tokens_and_restarts_on_a_new_sequence():
    index = NgramIndex(2)
    assert index.update([1, 2, 3]) == 0
    assert index.update([1, 2, 3, 1, 2]) == 3
    assert index.find([1, 2, 3, 1, 2]) == 2  # "1 2" was followed by 3
    assert index.update([7, 8]) == 0  # shorter / different: start over
    assert index.tokens == [7, 8]
    assert index.find([7, 8]) is None


def test_a_match_near_the_end_continues_through_the_drafted_tokens():
    index = NgramIndex(2)
    index.update([5, 1, 2, 1, 2])
    position = index.find([5, 1, 2, 1, 2])
    drafted: list[int] = []
    for j in range(5):
        drafted.append(index.continuation(position + j, 1, drafted)[0])
    assert drafted == [1, 2, 1, 2, 1]


def test_lookup_returns_distinct_continuations_newest_first():
    index = NgramIndex(1)
    index.update([9, 1, 2, 9, 3, 4, 9, 1, 2, 9])
    assert index.lookup(index.tokens, 2, limit=3) == [[1, 2], [3, 4]]
    assert index.lookup(index.tokens, 2, match="leftmost", limit=3) == [[1, 2]]
