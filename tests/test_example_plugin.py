"""examples/specdec-example-plugin, installed with pip, used by name from the CLI and from Python.

The package is pip-installed into a private directory (see tests/plugin_tools.py for why not into
the environment itself). Its strategies are not registered in the core registry by default, so the
exact-enumeration test does not cover them; the last test here runs `specdec.testing.assert_lossless`
on them while they are installed.
"""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import strategies as st

from specdec import Decoder
from specdec.cli import main
from specdec.plugins import make_policy, make_proposer
from specdec.testing import assert_lossless
from tests.models import real_model
from tests.plugin_tools import (
    TINY_DRAFT,
    TINY_TARGET,
    example_site,  # noqa: F401 - a fixture
    pip_install,
    plugins_on_path,
    run_cli,
    tiny,
)

# pip-installs the example package and runs the CLI in fresh interpreters
pytestmark = pytest.mark.slow

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


def test_the_example_strategies_are_exactly_lossless(example_site):
    from specdec.strategies.proposers import DraftModelProposer

    with plugins_on_path(example_site) as reg:
        budget, bigram = reg.get("policy", "budget").cls, reg.get("proposer", "bigram").cls
        fixed = reg.get("policy", "fixed").cls
        assert attrs.has(budget)
        budgets = lambda pair: st.builds(budget, threshold=st.floats(0.0, 1.0), max_draft=st.integers(1, 4))  # noqa: E731
        bigrams = lambda pair: st.builds(bigram, min_count=st.integers(1, 2))  # noqa: E731
        fixeds = lambda pair: st.builds(fixed, k=st.integers(1, 4))  # noqa: E731
        for policies, proposers in ((budgets, lambda pair: DraftModelProposer(pair.draft)), (budgets, bigrams), (fixeds, bigrams)):
            assert_lossless(policy_factory=policies, proposer_factory=proposers)
