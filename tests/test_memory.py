"""Memory stays flat over 200 generate calls and more than 1,000 rounds on one Decoder (the tiny
pair): whatever a round or a call allocates is freed by the next. Memory is the C heap in use
(glibc's `mallinfo2`, where torch's CPU tensors live), not the resident size, which a process
with freed heap to spare (the rest of the suite) does not grow even when something leaks. The
tolerance is checked by planting a leak of one logits tensor per target forward (4 KB at k = 1):
about 5 MB over the run, past the tolerance, while the decoder as it is adds none."""

from __future__ import annotations

import ctypes
import gc

import pytest

from specdec import Decoder
from specdec.integrations.loading import load_model
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET, tiny

CALLS = 200
ROUNDS = 1_000
TOLERANCE = 2 << 20  # bytes of heap in use the run may add (a cache entry or two, not a leak)
PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a girl named Sue"]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]  # fmt: skip


def heap_in_use() -> int:
    """Bytes malloc has handed out and not had back, over every arena and mmap'd block."""
    gc.collect()
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def growth(decoder: Decoder) -> tuple[int, int]:
    """(bytes the process grew by, rounds run) over CALLS sampled calls, after a warm-up."""
    for seed in range(20):  # caches, GEMM plans, allocator pools: what a first call sets up once
        decoder.generate(PROMPTS[seed % 4], 10, temperature=1.0, seed=seed)
    before, rounds = heap_in_use(), 0
    for call in range(CALLS):
        rounds += decoder.generate(PROMPTS[call % 4], 10, temperature=1.0, seed=1000 + call).stats.rounds
    return heap_in_use() - before, rounds


def tiny_decoder() -> Decoder:
    # k = 1: two tokens a round at most, so the calls run many rounds
    return Decoder(load_model(tiny(TINY_TARGET)), draft=load_model(tiny(TINY_DRAFT)), policy="fixed", policy_params={"k": 1})


@pytest.mark.slow  # 1,200 rounds of the tiny pair: about 50 s on 2 busy cores
def test_memory_stays_flat_over_calls_and_rounds():
    grown, rounds = growth(tiny_decoder())
    assert rounds >= ROUNDS
    assert grown <= TOLERANCE, f"grew by {grown / 1e6:.1f} MB over {CALLS} calls and {rounds} rounds"


@pytest.mark.slow  # 1,200 rounds of the tiny pair: about 50 s on 2 busy cores
def test_a_leak_of_one_tensor_per_forward_exceeds_the_tolerance():
    decoder = tiny_decoder()
    target, leaked = decoder.target, []
    forward = target.forward

    def leaking(*args, **kwargs):
        out = forward(*args, **kwargs)
        leaked.append(out.logits.clone())
        return out

    target.forward = leaking
    grown, rounds = growth(decoder)
    assert rounds >= ROUNDS and grown > TOLERANCE, f"a planted leak grew the heap in use by only {grown / 1e6:.1f} MB"
