"""Ouroboros' cost gates: the rates they keep, the lengths they allow, their probes and their reset.

The proposer-level effects (copies, phrases and branches cut to what pays) are in test_proposer_ouroboros.py;
these check the gate objects themselves, with numbers worked out by hand.
"""

from __future__ import annotations

import math

import pytest

from specdec.sampling import SamplingConfig
from specdec.strategies.estimates import DiscountedRate
from specdec.strategies.proposers import OuroborosProposer
from specdec.strategies.proposers.ouroboros.gates import PROBE_EVERY, AgreementGate, CostGate, rate
from tests.test_proposer_ouroboros import toy


def test_a_rate_starts_at_one_in_two_and_its_pseudo_counts_fade():
    record = rate()
    assert isinstance(record, DiscountedRate) and record.value == 0.5
    record.add(1.0, 1.0)  # (1 * 0.95 + 1) / (2 * 0.95 + 1)
    assert record.value == pytest.approx(1.95 / 2.9)
    for _ in range(200):
        record.add(0.0, 1.0)
    assert record.value < 1e-4  # no prior left: only what was seen counts


def test_a_cost_gate_offers_tokens_while_entry_times_cont_to_the_k_pays():
    gate = CostGate(rate(900, 1000), rate(600, 1000))
    # 0.9 * 0.6**(k-1) > 0.05 up to k = 6 (1 + int(log(0.05 / 0.9) / log(0.6)))
    assert gate.worth(0.05, 8) == 6
    assert gate.worth(0.05, 4) == 4  # the cap
    assert gate.worth(0.95, 8) == 0  # the first token does not pay
    assert gate.reach(3) == pytest.approx(0.9 * 0.6**2)
    assert gate.refusals == 0  # `worth` never probes


def test_a_closed_gate_probes_every_probe_every_refusals_and_only_when_closed():
    gate = CostGate(rate(1, 100), rate(1, 100))
    lengths = [gate.length(0.1, 5) for _ in range(2 * PROBE_EVERY)]
    assert [i for i, n in enumerate(lengths) if n] == [PROBE_EVERY - 1, 2 * PROBE_EVERY - 1]
    assert all(n in (0, 5) for n in lengths)
    gate.entry, gate.cont = rate(99, 100), rate(50, 100)  # open: no refusal counted
    assert [gate.length(0.1, 5) for _ in range(3)] == [4] * 3
    assert gate.refusals == 2 * PROBE_EVERY
    gate.entry = rate(1, 100)  # closed again: the count goes on from where it was
    assert [gate.length(0.1, 5) for _ in range(PROBE_EVERY)].index(5) == PROBE_EVERY - 1


@pytest.mark.parametrize(
    ("used", "offered", "entry", "cont"),
    [
        (0, 3, (0.95, 2.9), (1.0, 2.0)),  # first token missed: the continuation learns nothing
        (3, 3, (1.95, 2.9), (2.95, 3.9)),  # all used: 2 continuations, no miss
        (2, 4, (1.95, 2.9), (1.95, 3.9)),  # 1 continuation, then a miss
    ],
)
def test_a_cost_gate_learns_its_first_token_and_each_next_one(used, offered, entry, cont):
    gate = CostGate()
    gate.learn(used, offered)
    assert (gate.entry.hits, gate.entry.trials) == pytest.approx(entry)
    assert (gate.cont.hits, gate.cont.trials) == pytest.approx(cont)


def test_a_gate_starting_at_a_prior_has_two_independent_rates():
    gate = CostGate.starting_at(0.75)
    assert gate.entry.value == gate.cont.value == 0.75
    assert gate.entry.trials == gate.cont.trials == 2.0
    gate.entry.add(0.0, 1.0)
    assert gate.cont.value == 0.75


def test_an_agreement_gate_uses_one_rate_per_token():
    gate = AgreementGate(rate(500, 1000))
    assert gate.length(0.15, 6) == 2  # 0.5, 0.25 > 0.15 > 0.125
    gate.learn(3, 5)  # three agreed, then a disagreement
    assert (gate.rate.hits, gate.rate.trials) == pytest.approx((500 * 0.95 + 3, 1000 * 0.95 + 4))
    gate.learn(2, 2)  # the whole phrase agreed: no miss
    assert gate.rate.trials == pytest.approx((1000 * 0.95 + 4) * 0.95 + 2)
    closed = AgreementGate(rate(0, 100))
    assert [closed.length(0.15, 3) for _ in range(PROBE_EVERY)] == [0] * (PROBE_EVERY - 1) + [3]


def test_every_call_starts_with_fresh_gates():
    proposer = OuroborosProposer(toy(), copy_prior=0.75)
    context = [1, 2, 3, 1, 2]
    proposer.start(context, SamplingConfig())
    copies, branching, phrases = proposer.copies, proposer.branching, proposer.phrases
    copies.gate.entry.add(0.0, 50.0)
    copies.gate.probe()
    copies.draft_entry.add(50.0, 50.0)
    branching.gate.learn(0, 4)
    branching.gate.probe()
    phrases.gate("context").learn(0, 3)
    proposer.start(context, SamplingConfig())
    assert copies.gate.entry.value == copies.gate.cont.value == 0.75 and copies.gate.refusals == 0
    assert copies.draft_entry.value == 0.5
    assert branching.gate.entry.value == branching.gate.cont.value == 0.5 and branching.gate.refusals == 0
    assert phrases.gates == {}
    assert math.isclose(phrases.gate("context").rate.value, 0.5)
