"""Memory stays flat over 200 batched generate calls on one Decoder (the tiny pair, batches of 4
rows, the draft proposer and the auto policy): whatever a batch sets up per row (its strategies,
its cache rows on the target) is reused or freed by the next call. Memory is the C heap in use
(`tests.test_memory.heap_in_use`: glibc's count, where torch's CPU tensors live), not the resident
size, which a process with freed heap to spare does not grow even when something leaks. The
tolerance is checked by planting a leak of one row's key/value cache per call."""

from __future__ import annotations

import pytest

from specdec import Decoder
from specdec.integrations.loading import load_model
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET, tiny
from tests.test_memory import TOLERANCE, heap_in_use

CALLS = 200
PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a girl named Sue"]


def batch_decoder() -> Decoder:
    return Decoder(load_model(tiny(TINY_TARGET)), draft=load_model(tiny(TINY_DRAFT)), policy="auto")


def growth(decoder: Decoder, after_call=lambda: None) -> tuple[int, int]:
    """(bytes the heap in use grew by, rounds run) over CALLS sampled batch calls, after a warm-up."""

    def call(seed: int) -> int:
        results = decoder.generate(PROMPTS, 10, temperature=1.0, seed=seed, batch_size=4)
        after_call()
        return sum(r.stats.rounds for r in results)

    for seed in range(20):  # rows' strategies and caches, GEMM plans, allocator pools: set up once
        call(seed)
    before = heap_in_use()
    rounds = sum(call(1000 + seed) for seed in range(CALLS))
    return heap_in_use() - before, rounds


def test_memory_stays_flat_over_batched_calls():  # 200 batches of 4 rows: about 12 s on 2 busy cores
    grown, rounds = growth(batch_decoder())
    assert rounds >= CALLS * len(PROMPTS)
    assert grown <= TOLERANCE, f"grew by {grown / 1e6:.1f} MB over {CALLS} batched calls and {rounds} row rounds"


@pytest.mark.slow  # the same 200 batches again, with the plant
def test_a_leak_of_one_row_cache_per_call_exceeds_the_tolerance():
    decoder = batch_decoder()
    stack, leaked = decoder.target.stack, []

    def leak_row_one() -> None:  # the planted bug: row 1's keys and values kept after every call
        leaked.append((stack._keys[:, 1].clone(), stack._values[:, 1].clone()))

    grown, _ = growth(decoder, leak_row_one)
    assert leaked and grown > TOLERANCE, f"a planted leak grew the heap in use by only {grown / 1e6:.1f} MB"
