"""`DiscountedRate`, the success rate the adaptive strategies share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specdec.strategies.estimates import DiscountedRate


def test_a_rate_leans_on_its_prior_until_observations_outweigh_it():
    rate = DiscountedRate(prior=0.8, weight=2.0)
    assert rate.value == pytest.approx(0.8)
    rate.add(0.0)
    assert rate.value == pytest.approx(1.6 / 3)  # (0 + 2 * .8) / (1 + 2)
    for _ in range(98):
        rate.add(0.0)
    assert rate.value == pytest.approx(1.6 / 101)


def test_old_observations_fade_by_keep():
    rate = DiscountedRate(prior=0.5, weight=1.0, keep=0.5)
    rate.add(1.0)
    rate.add(0.0)  # the hit now counts half
    assert (rate.hits, rate.trials) == (0.5, 1.5)
    assert rate.value == pytest.approx((0.5 + 0.5) / 2.5)


def test_forget_goes_back_to_the_prior():
    rate = DiscountedRate(prior=0.5, weight=1.0)
    rate.add(1.0, 3.0)
    rate.forget()
    assert rate.value == 0.5 and rate.trials == 0.0


def test_upper_adds_standard_errors_of_the_evidence_so_far():
    rate = DiscountedRate(prior=0.5, weight=2.0)
    rate.add(0.0, 3.0)
    p = 1.0 / 5
    assert rate.upper(1.0) == pytest.approx(p + math.sqrt(p * (1 - p) / 5))
    assert rate.upper(0.0) == rate.value and DiscountedRate(prior=0.99).upper(10.0) == 1.0


@given(st.lists(st.floats(0.0, 1.0), max_size=50), st.floats(0.01, 1.0), st.floats(0.0, 1.0))
def test_a_rate_stays_a_probability(outcomes, keep, prior):
    rate = DiscountedRate(prior=prior, weight=1.0, keep=keep)
    for outcome in outcomes:
        rate.add(outcome)
        assert 0.0 <= rate.value <= 1.0 + 1e-12


def test_a_rate_without_evidence_or_prior_weight_is_zero():
    assert DiscountedRate(prior=0.7, weight=0.0).value == 0.0
