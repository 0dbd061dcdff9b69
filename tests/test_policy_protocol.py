"""Checks that run across every policy: bad parameters, the hard draft cap, the docstring."""

from __future__ import annotations

import math

import attrs
import pytest

from specdec import ConfigurationError
from specdec.plugins import registry
from specdec.strategies.policies import AdaEdlPolicy, ConfidencePolicy, CostAwarePolicy, HeuristicPolicy, OraclePolicy, SvipPolicy
from specdec.cli.values import build_strategy
from tests.policy_helpers import STATE

NAN = math.nan
BAD_PARAMETERS = [
    (HeuristicPolicy, {"k": 0}),
    (HeuristicPolicy, {"max_draft": 0}),
    (HeuristicPolicy, {"persist": "no"}),
    (SvipPolicy, {"h": -0.1}),
    (SvipPolicy, {"h": NAN}),
    (SvipPolicy, {"gamma_s": 0.0}),
    (SvipPolicy, {"gamma_s": math.inf}),
    (SvipPolicy, {"max_draft": 0}),
    (ConfidencePolicy, {"threshold": -0.1}),
    (ConfidencePolicy, {"threshold": NAN}),
    (ConfidencePolicy, {"threshold": 1.5}),
    (ConfidencePolicy, {"max_draft": 0}),
    (ConfidencePolicy, {"history": 5}),
    (AdaEdlPolicy, {"gamma": -0.2}),
    (AdaEdlPolicy, {"gamma": NAN}),
    (AdaEdlPolicy, {"initial_lambda": NAN}),
    (AdaEdlPolicy, {"initial_lambda": -0.5}),
    (AdaEdlPolicy, {"beta2": 1.5}),
    (AdaEdlPolicy, {"eps": -0.01}),
    (AdaEdlPolicy, {"min_draft": -1}),
    (AdaEdlPolicy, {"max_draft": 0}),
    (CostAwarePolicy, {"draft_cost": -1.0}),
    (CostAwarePolicy, {"draft_cost": NAN}),
    (CostAwarePolicy, {"width_cost": -0.1}),
    (CostAwarePolicy, {"prior_acceptance": 1.5}),
    (CostAwarePolicy, {"prior_weight": 0.0}),
    (CostAwarePolicy, {"explore_share": 1.5}),
    (CostAwarePolicy, {"optimism": -1.0}),
    (CostAwarePolicy, {"catchup_cost": math.nan}),
    (CostAwarePolicy, {"max_draft": 0}),
    (OraclePolicy, {"max_draft": 0}),
    (OraclePolicy, {"continuation": [1, -2]}),
    (OraclePolicy, {"continuation": [1, 2.5]}),
]


@pytest.mark.parametrize("cls,kwargs", BAD_PARAMETERS, ids=lambda x: getattr(x, "__name__", None) or str(x))
def test_bad_parameters_are_configuration_errors(cls, kwargs):
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        cls(**kwargs)


@pytest.mark.parametrize(
    "name,params", [("svip", {"h": "nan"}), ("adaedl", {"max_draft": "0"}), ("confidence", {"threshold": "-1"})]
)
def test_bad_command_line_parameters_are_configuration_errors(name, params):
    with pytest.raises(ConfigurationError):
        build_strategy(registry(), "policy", name, params)


@pytest.mark.parametrize("name", [n for n in registry().names("policy") if n != "fixed"])
def test_every_new_policy_has_a_hard_cap_and_documents_itself(name):
    cls = registry().get("policy", name).cls
    assert cls.name == name and "max_draft" in (cls.__doc__ or "")
    fields = {f.name: f for f in attrs.fields(cls)}
    assert "max_draft" in fields and fields["max_draft"].init
    with pytest.raises(ConfigurationError):
        cls(max_draft=0)
    policy = cls(max_draft=3, **({"continuation": list(range(100))} if name == "oracle" else {}))
    policy.start()
    assert 0 <= policy.begin_round(STATE) <= 3
