"""examples/specdec-example-plugin, installed with pip, used by name from the CLI and from Python.

The package is pip-installed into a private directory (see tests/plugin_tools.py for why not into
the environment itself). Its strategies are not registered in the core registry by default, so the
exact-enumeration test does not cover them; the last test here runs that test's `assert_lossless`
on them while they are installed.
"""

from __future__ import annotations

import json
import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specdec import Decoder, Verifier
from specdec.cli import main
from specdec.plugins import make_policy, make_proposer
from tests.plugin_tools import (
    TINY_DRAFT,
    TINY_TARGET,
    example_site,  # noqa: F401 - a fixture
    pip_install,
    plugins_on_path,
    run_cli,
    tiny,
)
from tests.models import real_model
from tests.test_lossless_exact import assert_lossless
from tests.toy_strategies import MAX_NEW_BY_VOCAB, LosslessCase, sampling_configs, toy_pairs

PROMPT = "Once upon a time"


def target_only_ids(max_new_tokens: int) -> list[int]:
    return list(Decoder(real_model(TINY_TARGET)).generate(PROMPT, max_new_tokens).ids)


def test_plugins_command_lists_the_example_strategies(example_site):
    listed = json.loads(run_cli(["plugins", "--json"], example_site).stdout)
    ours = {s["name"]: s for s in listed["strategies"] if s["distribution"] == "specdec-example-plugin"}
    assert {(n, s["kind"], s["version"]) for n, s in ours.items()} == {("budget", "policy", "0.1.0"), ("bigram", "proposer", "0.1.0")}
    assert [p["name"] for p in ours["budget"]["parameters"]] == ["threshold", "max_draft"]
    assert listed["failures"] == []


def test_both_strategies_by_name_from_the_cli_are_exact(example_site, capsys):
    expected = target_only_ids(24)
    common = ["generate", PROMPT, "--target", tiny(TINY_TARGET), "--max-new-tokens", "24", "--json"]
    both = json.loads(run_cli(common + ["--policy", "budget", "--policy-param", "max_draft=3", "--proposer", "bigram"],
                              example_site).stdout)
    assert both["ids"] == expected and both["stats"]["draft_forwards"] == 0 and both["stats"]["drafted"] > 0
    # the same in this process (a fresh interpreter per run costs seconds): budget with the draft model
    with plugins_on_path(example_site):
        assert main(common + ["--draft", tiny(TINY_DRAFT), "--policy", "budget", "--policy-param", "threshold=0.2"]) == 0
    with_draft = json.loads(capsys.readouterr().out)
    assert with_draft["ids"] == expected and with_draft["stats"]["draft_forwards"] > 0


def test_both_strategies_by_name_from_python(example_site):
    expected = target_only_ids(32)
    with plugins_on_path(example_site) as reg:
        assert reg.get("policy", "budget").distribution == "specdec-example-plugin"
        budget = make_policy("budget", threshold=0.25, max_draft=5)
        decoder = Decoder(real_model(TINY_TARGET), proposer=make_proposer("draft", model=real_model(TINY_DRAFT)), policy=budget)
        result = decoder.generate(PROMPT, 32)
        assert list(result.ids) == expected and result.stats.drafted > 0
        bigram = Decoder(decoder.target, proposer=make_proposer("bigram", min_count=2), policy=make_policy("fixed", k=3))
        assert list(bigram.generate(PROMPT, 32).ids) == expected
        sampled = [Decoder(decoder.target, proposer=make_proposer("bigram"), policy=budget).generate(
            PROMPT, 16, temperature=0.9, seed=1).ids for _ in range(2)]
        assert sampled[0] == sampled[1] and len(sampled[0]) == 16


BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "specdec-broken-plugin"
version = "0.0.1"

[project.entry-points.specdec]
broken = "specdec_broken_plugin"

[tool.setuptools]
py-modules = ["specdec_broken_plugin"]
"""


def test_a_broken_plugin_package_is_reported_and_skipped(example_site, tmp_path):
    source = tmp_path / "specdec-broken-plugin"
    source.mkdir()
    (source / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (source / "specdec_broken_plugin.py").write_text("import a_dependency_that_is_not_installed\n")
    broken_site = tmp_path / "site"
    pip_install(source, broken_site)

    listed = json.loads(run_cli(["plugins", "--json"], broken_site, example_site).stdout)
    [failure] = listed["failures"]
    assert (failure["distribution"], failure["version"], failure["plugin"]) == ("specdec-broken-plugin", "0.0.1", "broken")
    assert "a_dependency_that_is_not_installed" in failure["error"]
    assert {"budget", "bigram", "fixed", "draft"} <= {s["name"] for s in listed["strategies"]}
    with plugins_on_path(broken_site, example_site):
        decoder = Decoder(real_model(TINY_TARGET), proposer=make_proposer("bigram"), policy=make_policy("budget"))
        assert list(decoder.generate(PROMPT, 12).ids) == target_only_ids(12)


@st.composite
def example_cases(draw, policy_cls: type, proposer_cls: type | None, fixed_cls: type) -> LosslessCase:
    pair = draw(toy_pairs())
    prompt = tuple(draw(st.lists(st.integers(1, pair.vocab - 1), min_size=1, max_size=3)))
    max_new = draw(st.integers(2, MAX_NEW_BY_VOCAB[pair.vocab]))
    if policy_cls is fixed_cls:
        policy = fixed_cls(k=draw(st.integers(1, 4)))
    else:
        policy = policy_cls(threshold=draw(st.floats(0.0, 1.0)), max_draft=draw(st.integers(1, 4)))
    if proposer_cls is None:
        from specdec.strategies.proposers import DraftModelProposer

        make_proposer_ = lambda: DraftModelProposer(pair.draft)  # noqa: E731
    else:
        min_count = draw(st.integers(1, 2))
        make_proposer_ = lambda: proposer_cls(min_count=min_count)  # noqa: E731
    return LosslessCase(pair, prompt, max_new, draw(sampling_configs(pair.vocab)), policy, make_proposer_)


def test_the_example_strategies_are_exactly_lossless(example_site):
    with plugins_on_path(example_site) as reg:
        budget, bigram = reg.get("policy", "budget").cls, reg.get("proposer", "bigram").cls
        fixed = reg.get("policy", "fixed").cls
        for policy_cls, proposer_cls in ((budget, None), (budget, bigram), (fixed, bigram)):

            @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])
            @given(case=example_cases(policy_cls, proposer_cls, fixed))
            def check(case: LosslessCase) -> None:
                assert attrs.has(type(case.policy))
                assert_lossless(case, Verifier())

            check()
