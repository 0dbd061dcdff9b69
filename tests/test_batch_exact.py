"""A batch is exact: each row's output distribution is the target's, and rows are independent.

Each hypothesis case is a toy pair and three prompts decoded as one batch of two rows in flight
(the third prompt takes the row of the first to finish), every row with its own policy and
proposer from `Decoder(strategies=...)`. The whole batch is enumerated over every random branch
of all rows at once, and the joint distribution of the three outputs must equal the product of
the target's own distributions of each prompt (within 1e-9): right marginals, and no row's output
depends on another's. End tokens in the toy pairs end rows early, so rows finish at different
rounds and slots are reused mid-batch. Below it, one row of a batch model kept by a
`SequenceCache` must behave as a model of its own.
"""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specdec import Decoder
from specdec.plugins import registry
from specdec.testing import TOLERANCE, enumerate_outputs
from specdec.testing.reference import target_distribution
from tests.toy_strategies import lossless_cases

COMBINATIONS = [(p, q) for p in registry().names("policy") for q in registry().names("proposer")]
ROWS = 2  # rows in flight: three prompts, so one waits for a row


def batch_distribution(case, prompts, lengths) -> dict:
    s = case.sampling

    def run(sampler):
        decoder = Decoder(case.pair.target, strategies=lambda: (copy.deepcopy(case.policy), case.make_proposer()))
        results = decoder.generate(
            [list(p) for p in prompts], lengths, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
            sampler=[sampler] * len(prompts), batch_size=ROWS,
        )
        return tuple(r.ids for r in results)

    return enumerate_outputs(run)


def independent_targets(case, prompts, lengths) -> dict:
    s, pair = case.sampling, case.pair
    rows = [target_distribution(pair.target.row, p, n, pair.eos, s.temperature, s.top_k, s.top_p) for p, n in zip(prompts, lengths)]
    return {tuple(outs for outs, _ in combo): _product(p for _, p in combo) for combo in itertools.product(*(r.items() for r in rows))}


def _product(values) -> float:
    total = 1.0
    for value in values:
        total *= value
    return total


# a whole batch's tree is the product of its rows': at most 10 cases per combination, whatever the profile
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], max_examples=min(settings.default.max_examples, 10))
@given(data=st.data())
def batch_property(data, policy_name: str, proposer_name: str) -> None:
    case = data.draw(lossless_cases(policy_name, proposer_name))
    vocab = case.pair.vocab
    others = [tuple(data.draw(st.lists(st.integers(1, vocab - 1), min_size=1, max_size=4), label=f"prompt {i}")) for i in (1, 2)]
    prompts = [case.prompt, *others]
    lengths = [min(case.max_new_tokens, 3), 2, data.draw(st.integers(1, 2), label="third length")]
    got, expected = batch_distribution(case, prompts, lengths), independent_targets(case, prompts, lengths)
    worst = max(abs(got.get(k, 0.0) - expected.get(k, 0.0)) for k in got.keys() | expected.keys())
    assert worst <= TOLERANCE, f"batch distribution off by {worst:.3g} for prompts {prompts}, lengths {lengths}, {case.sampling}"


@pytest.mark.parametrize("policy_name,proposer_name", COMBINATIONS)
def test_every_row_of_a_batch_is_exact_and_independent(policy_name, proposer_name):
    batch_property(policy_name=policy_name, proposer_name=proposer_name)


def test_a_model_row_is_a_sequence_of_its_own():
    """One row of a toy batch model, kept by a `SequenceCache`, gives what a model of its own
    gives: chains, a crop, a token tree and its kept path, beside another row fed meanwhile."""
    from specdec.integrations.rows import ModelRow
    from specdec.sequence_cache import SequenceCache
    from specdec.testing.toys import seeded_toy

    batch, alone = seeded_toy(5, 2, seed=4), seeded_toy(5, 2, seed=4)
    row, other = SequenceCache(ModelRow(batch, 2)), SequenceCache(ModelRow(batch, 1))
    own = SequenceCache(alone)
    steps = [
        dict(context=[1, 2, 3], extra=[4, 0], keep=3),
        dict(context=[1, 2, 3, 4, 1], keep=1),  # the draft's 0 rejected: cropped
        dict(context=[1, 2, 3, 4, 1, 2], tree=([0, 3, 4], [-1, -1, 1]), keep=4),
        dict(context=[1, 2, 3, 4, 1, 2, 3, 4, 2], keep=1),  # the tree's path 3, 4 (not its first nodes) kept
    ]
    for step in steps:
        other.sync([4, 4, 3, 1][: 1 + len(step["context"]) % 4])
        assert row.sync(**step).logits.tolist() == own.sync(**step).logits.tolist()
    assert row.ids == own.ids
