"""The oracle ceiling (`specdec ceiling`): exact round counts, and a draft that is the target agrees everywhere."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specdec.bench.ceiling import SOURCES, ceiling, copy_predictions, draft_agreement, fewest_rounds, measure, repeated_ngrams, summarize
from specdec.decoder import Decoder
from specdec.errors import ConfigurationError
from specdec.strategies.policies.fixed import FixedPolicy
from specdec.strategies.proposers.draft_model import DraftModelProposer

from .models import real_model


def test_rounds_of_each_oracle_on_a_worked_example():
    output = [10, 11, 12, 13, 14, 15]
    agrees = [True, True, False, False, True, False]
    copies = [[], [], [12, 13, 99], [], [], []]  # the copy at 2 repeats two output tokens
    found = ceiling(output, agrees, copies)
    # draft: 10 11 (+12) | (13) | 14 (+15); copy: (10) | (11) | 12 13 (+14) | (15);
    # either: as the draft; mixed: 10 11 by the draft, 12 13 copied, 14 by the draft (+15)
    assert found.rounds == {"draft": 3, "copy": 4, "either": 3, "mixed": 1}
    assert found.tokens_per_round("mixed") == 6.0


def test_copies_come_from_the_newest_match_and_read_on_into_the_output():
    prompt = [7, 1, 2, 3, 4, 8, 1, 2]
    # (1, 2) last occurred at the end (nothing follows yet), so the copy comes from the one before
    assert copy_predictions(prompt, [3, 4, 6], ngram=2, length=3) == [[3, 4, 8], [4, 8, 1], [8, 1, 2]]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one draft agreement and one copy per output token"):
        ceiling([1, 2], [True], [[], []])


@st.composite
def oracle_inputs(draw):
    output = draw(st.lists(st.integers(0, 3), min_size=1, max_size=30))
    agrees = draw(st.lists(st.booleans(), min_size=len(output), max_size=len(output)))
    copies = [draw(st.lists(st.integers(0, 3), max_size=5)) for _ in output]
    return output, agrees, copies


@given(oracle_inputs())
def test_switching_sources_never_needs_more_rounds(inputs):
    found = ceiling(*inputs)
    assert found.rounds["mixed"] <= found.rounds["either"] <= min(found.rounds["draft"], found.rounds["copy"])
    assert all(1 <= found.rounds[s] <= found.tokens for s in SOURCES)


def test_summaries_pool_prompts_and_price_a_round_at_one_step():
    records = [
        {"category": "a", "prompt_tokens": 10, "tokens": 9, "prefill_seconds": 2.0, "step_seconds": 1.0,
         "draft_agreement": 0.5, "rounds": {s: 3 for s in SOURCES}, "ngrams": 4, "ngrams_from_prompt": 1, "ngrams_from_output": 0},
        {"category": "b", "prompt_tokens": 30, "tokens": 3, "prefill_seconds": 1.0, "step_seconds": 1.0,
         "draft_agreement": 1.0, "rounds": {s: 1 for s in SOURCES}, "ngrams": 0, "ngrams_from_prompt": 0, "ngrams_from_output": 0},
    ]
    rows = {row["category"]: row for row in summarize(records)}
    assert rows["a"]["speedup_draft"] == pytest.approx((2 + 8) / (2 + 2))
    assert rows["a"]["tokens_per_round_mixed"] == pytest.approx(3.0)
    assert rows["all"]["speedup_copy"] == pytest.approx((10 + 3) / (4 + 1))
    assert rows["all"]["draft_agreement"] == pytest.approx((0.5 * 9 + 3) / 12)
    assert rows["all"]["repeats_prompt"] == pytest.approx(1 / 4)  # pooled over n-grams, not averaged per prompt
    assert math.isnan(rows["b"]["repeats_output"])  # an output shorter than n has no n-grams


def test_repeated_ngrams_tell_copies_of_the_prompt_from_loops_of_the_output():
    prompt = [1, 2, 3, 4]
    output = [2, 3, 4, 9, 2, 3, 4, 9, 2]
    # 3-grams: 234 (prompt), 349, 492, 923, 234 (prompt, and earlier), 349 (earlier), 492 (earlier)
    assert repeated_ngrams(prompt, output, n=3) == (7, 2, 3)
    # a loop of period 1 repeats from its second n-gram on, overlapping the first
    assert repeated_ngrams([], [5, 5, 5, 5], n=2) == (3, 0, 2)
    assert repeated_ngrams(prompt, [1, 2], n=3) == (0, 0, 0)
    with pytest.raises(ValueError):
        repeated_ngrams(prompt, output, n=0)


def test_a_draft_that_is_the_target_agrees_with_every_output_token():
    # the teacher-forced rows must line up with the output: any shift breaks agreement
    target = real_model("stories260K")
    ids = Decoder(target).encode("Once upon a time, there was a little girl")
    record = measure(target, target, ids, 24)
    assert record["tokens"] == 24
    assert record["draft_agreement"] == 1.0
    assert record["rounds"]["draft"] == 1
    assert record["ngrams"] == 24 - 6 + 1  # the output's 6-grams, not the prompt's


def test_teacher_forced_agreement_is_what_a_one_token_draft_gets_accepted():
    # with k = 1 a round starting at i keeps the draft's token exactly when agreement[i] holds
    # (a float draft: an int8 one quantizes each forward's activations together, so its argmax
    # can depend on how the tokens were grouped into forwards)
    target, draft = real_model("stories260K"), real_model("stories260K-draft")
    decoder = Decoder(target, proposer=DraftModelProposer(draft), policy=FixedPolicy(k=1))
    ids = decoder.encode("Once upon a time, there was a little girl")
    result = decoder.generate(ids, 64)
    agrees = draft_agreement(draft, ids, result.ids)
    i = rounds = 0
    while i < len(result.ids):
        i += 2 if agrees[i] and i + 1 < len(result.ids) else 1
        rounds += 1
    assert rounds == result.stats.rounds
    assert 0 < sum(agrees) < len(agrees)


def test_a_draft_of_another_vocabulary_is_refused():
    with pytest.raises(ConfigurationError, match="vocabulary"):
        measure(real_model("stories260K"), real_model("smollm2-draft"), [1, 2, 3], 4)


def test_a_shorter_round_can_land_where_a_longer_copy_starts():
    # the draft agrees at 0 only; a copy from 1 covers 1-2. Taking the draft's token at 0 skips the
    # copy's start; stopping at 0 (the round emits token 0) reaches it: 3 rounds, as copies alone
    found = ceiling([0, 0, 0, 0, 0], [True, False, False, False, False], [[], [0, 0], [], [], []])
    assert found.rounds == {"draft": 4, "copy": 3, "either": 3, "mixed": 2}  # mixed: the draft token, then the copy


@given(st.lists(st.integers(0, 3), min_size=1, max_size=8))
def test_fewest_rounds_is_the_fewest_of_every_way_to_stop(run):
    n = len(run)

    def search(i: int) -> int:  # every choice of accepted tokens, exhaustively
        return 0 if i >= n else 1 + min(search(i + a + 1) for a in range(run[i] + 1))

    assert fewest_rounds(run, n) == search(0)
