"""The plugin layer: one registration path, clear errors, broken plugins reported and skipped.

Third-party plugins here are fake installed distributions (dist-info metadata with an entry point
in the `specdec` group, plus a module) written into a temporary directory on sys.path: exactly
what importlib.metadata sees after a pip install, without building anything. The real pip path is
exercised by tests/test_example_plugin.py and tests/test_docs.py.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Protocol

import pytest

import specdec.plugins
import specdec.registry
from specdec import ConfigurationError, LengthPolicy, PluginError, Proposer, hookspecs
from specdec.cli import main
from specdec.cli.values import build_strategy
from specdec.plugins import load_registry, make_policy, make_proposer
from tests.plugin_tools import REPO, TINY_DRAFT, TINY_TARGET, fake_distribution, plugins_on_path, tiny

POLICY_MODULE = '''
from __future__ import annotations

from typing import Literal

import attrs

from specdec.hookspecs import hookimpl
from specdec.policy import Decision, PolicyBase, positive_int


@attrs.define
class {cls}(PolicyBase):
    """Draft `k` tokens every round (a test policy)."""

    name = "{name}"
    k: int = attrs.field(default=2, validator=positive_int)
    mode: Literal["eager", "lazy"] = "eager"
    ratio: float | None = None
    loud: bool = False
    _rounds: int = attrs.field(default=0, alias="rounds")

    def begin_round(self, state):
        return self.k

    def decide(self, features):
        return Decision.CONTINUE


@hookimpl
def specdec_register_policies():
    return {{"{name}": {cls}}}
'''


def policy_plugin(site: Path, dist: str, module: str, name: str, version: str = "1.0") -> Path:
    source = POLICY_MODULE.format(cls="TestPolicy", name=name)
    return fake_distribution(site, dist, {module: source}, {module: module}, version=version)


def test_builtins_load_through_the_plugin_path_without_failures():
    reg = load_registry(entry_points=False)
    assert reg.failures == []
    assert {"fixed"} <= set(reg.names("policy")) and {"draft"} <= set(reg.names("proposer"))
    assert {e.origin.plugin for e in reg.entries.values()} == set(specdec.plugins.BUILTIN_PLUGINS)
    assert all(e.origin.builtin and e.distribution == "specdec" for e in reg.entries.values())


def test_builtins_and_third_parties_share_one_registration_path(tmp_path, monkeypatch):
    seen = []
    original = specdec.plugins._register
    monkeypatch.setattr(specdec.plugins, "_register", lambda reg, pm, c: (seen.append(c.origin), original(reg, pm, c)))
    with plugins_on_path(policy_plugin(tmp_path, "specdec-half", "half_plugin", "half")) as reg:
        assert reg.get("policy", "half").distribution == "specdec-half"
    assert [o.plugin for o in seen if o.builtin] == list(specdec.plugins.BUILTIN_PLUGINS)
    assert [(o.plugin, o.distribution) for o in seen if not o.builtin] == [("half_plugin", "specdec-half")]


def test_a_third_party_policy_is_usable_by_name_from_strings_and_from_python(tmp_path):
    with plugins_on_path(policy_plugin(tmp_path, "specdec-half", "half_plugin", "half", "2.5")) as reg:
        entry = reg.get("policy", "half")
        assert (entry.distribution, entry.version, entry.origin.plugin) == ("specdec-half", "2.5", "half_plugin")
        policy = build_strategy(reg, "policy", "half", {"k": "3", "mode": "lazy", "ratio": "none", "loud": "yes", "rounds": "1"})
        assert (policy.k, policy.mode, policy.ratio, policy.loud, policy._rounds) == (3, "lazy", None, True, 1)
        assert build_strategy(reg, "policy", "half", {"ratio": "0.5"}).ratio == 0.5
        assert make_policy("half", k=5).k == 5
        assert [str(p) for p in entry.parameters()][:2] == ["k: int = 2", "mode: one of 'eager', 'lazy' = 'eager'"]
    with pytest.raises(PluginError, match="unknown policy 'half'"):
        make_policy("half")  # gone with its directory


def test_duplicate_names_are_an_error_naming_both_sources_and_other_names_keep_working(tmp_path):
    policy_plugin(tmp_path, "specdec-twin-a", "twin_a", "twin", "1.0")
    policy_plugin(tmp_path, "specdec-twin-b", "twin_b", "twin", "2.0")
    fake_distribution(tmp_path, "specdec-solo", {"solo": POLICY_MODULE.format(cls="Solo", name="solo")}, {"solo": "solo"})
    with plugins_on_path(tmp_path) as reg:
        with pytest.raises(PluginError) as caught:
            reg.get("policy", "twin")
        message = str(caught.value)
        assert "specdec-twin-a 1.0 (plugin 'twin_a')" in message and "specdec-twin-b 2.0 (plugin 'twin_b')" in message
        assert "twin" not in reg.names("policy")
        assert build_strategy(reg, "policy", "solo", {"k": "2"}).k == 2
        assert build_strategy(reg, "policy", "fixed", {"k": "2"}).k == 2


def test_a_plugin_reusing_a_builtin_name_is_an_error_naming_both(tmp_path):
    with plugins_on_path(policy_plugin(tmp_path, "specdec-shadow", "shadow", "fixed")) as reg:
        with pytest.raises(PluginError, match=r"specdec \S+ \(plugin 'specdec.strategies.policies'\) and specdec-shadow"):
            make_policy("fixed")
        assert reg.get("proposer", "draft").origin.builtin


def test_a_broken_plugin_is_reported_and_skipped_while_everything_else_works(tmp_path, capsys):
    broken = "raise ImportError(\"No module named 'missing_dependency'\")\n"
    fake_distribution(tmp_path, "specdec-broken", {"broken_plugin": broken}, {"broken": "broken_plugin"}, version="0.3")
    policy_plugin(tmp_path, "specdec-half", "half_plugin", "half")
    with plugins_on_path(tmp_path) as reg:
        [failure] = reg.failures
        assert (failure.plugin, failure.distribution, failure.version) == ("broken", "specdec-broken", "0.3")
        assert "ImportError" in failure.error and "missing_dependency" in failure.error
        assert {"half", "fixed"} <= set(reg.names("policy"))

        assert main(["plugins", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["failures"][0]["distribution"] == "specdec-broken"
        assert {"half", "fixed", "draft"} <= {s["name"] for s in listed["strategies"]}
        assert main(["plugins"]) == 0
        table = capsys.readouterr().out
        assert "failed to load" in table and "specdec-broken" in table and "half" in table

        argv = ["generate", "Once upon a time", "--target", tiny(TINY_TARGET), "--draft", tiny(TINY_DRAFT),
                "--policy", "half", "--policy-param", "k=3", "--max-new-tokens", "8", "--json"]
        assert main(argv) == 0
        result = json.loads(capsys.readouterr().out)
        assert len(result["ids"]) == 8 and result["stats"]["drafted"] > 0


QUITTERS = {
    "at import": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    "in a hook": ("from specdec.hookspecs import hookimpl\n@hookimpl\ndef specdec_register_policies():\n"
                  "    raise SystemExit('bye')\n", "SystemExit: 'bye'"),
}


@pytest.mark.parametrize("case", QUITTERS, ids=list(QUITTERS))
def test_a_plugin_calling_sys_exit_is_reported_and_skipped(tmp_path, capsys, case):
    source, expected = QUITTERS[case]
    fake_distribution(tmp_path, "specdec-quitter", {"quitter_plugin": source}, {"quitter": "quitter_plugin"})
    policy_plugin(tmp_path, "specdec-half", "half_plugin", "half")
    with plugins_on_path(tmp_path) as reg:
        [failure] = reg.failures
        assert failure.distribution == "specdec-quitter" and expected in failure.error
        assert {"half", "fixed"} <= set(reg.names("policy"))
        assert main(["plugins"]) == 0
        assert "specdec-quitter" in capsys.readouterr().out
        assert main(["generate", "Once", "--target", tiny(TINY_TARGET), "--policy", "quitter"]) == 2
        error = capsys.readouterr().err
        assert "unknown policy 'quitter'" in error and "plugins that failed to load: specdec-quitter" in error


def test_a_keyboard_interrupt_while_loading_a_plugin_is_not_swallowed(tmp_path):
    fake_distribution(tmp_path, "specdec-slow", {"slow_plugin": "raise KeyboardInterrupt\n"}, {"slow": "slow_plugin"})
    with pytest.raises(KeyboardInterrupt), plugins_on_path(tmp_path):
        pass


def members(protocol: type) -> list[str]:
    """What a class must have to implement `protocol`, read here independently of the registry."""
    return sorted({n for n in dir(protocol) if not n.startswith("_")} | set(protocol.__annotations__))


def lacks(kind: str, protocol: type) -> str:
    """The failure of a class that has nothing of `protocol` but its `name`."""
    return f"lacks {', '.join(m for m in members(protocol) if m != 'name')} of the {kind} protocol"


BROKEN_HOOKS = {
    "hook raises": ("@hookimpl\ndef specdec_register_policies():\n    raise RuntimeError('boom')\n", "RuntimeError: boom"),
    "not a dict": ("@hookimpl\ndef specdec_register_policies():\n    return ['x']\n", "returned list, expected a dict"),
    "not attrs": ("class P:\n    pass\n@hookimpl\ndef specdec_register_policies():\n    return {'p': P}\n",
                  "must be an attrs class"),
    "not a policy": ("import attrs\n@attrs.define\nclass P:\n    name = 'p'\n"
                     "@hookimpl\ndef specdec_register_policies():\n    return {'p': P}\n",
                     lacks("policy", LengthPolicy)),
    "not a proposer": ("import attrs\n@attrs.define\nclass P:\n    name = 'p'\n"
                       "@hookimpl\ndef specdec_register_proposers():\n    return {'p': P}\n",
                       lacks("proposer", Proposer)),
    "bad name": ("from specdec.strategies.policies import FixedPolicy\n"
                 "@hookimpl\ndef specdec_register_policies():\n    return {'Fixed Two': FixedPolicy}\n",
                 "name 'Fixed Two' is not valid"),
    "a name twice": ("from specdec.strategies.policies import FixedPolicy\n"
                     "@hookimpl\ndef specdec_register_policies():\n    return {'p': FixedPolicy}\n"
                     "@hookimpl(specname='specdec_register_policies')\ndef again():\n    return {'p': FixedPolicy}\n",
                     "specdec_register_policies returned the policy name 'p' twice"),
    "wrapper not a list": ("from specdec.strategies.policies import FixedPolicy\n"
                           "@hookimpl(wrapper=True, specname='specdec_register_policies')\n"
                           "def wrap():\n    yield\n    return {'p': FixedPolicy}\n",
                           "specdec_register_policies wrapper returned dict, expected the list of results"),
    "typo in hook": ("@hookimpl\ndef specdec_register_policy():\n    return {}\n",
                     "unknown hook(s) specdec_register_policy; specdec's hooks are specdec_register_policies"),
    "no hooks": ("def register():\n    return {}\n", "defines no specdec hook"),
    "wrong arguments": ("@hookimpl\ndef specdec_register_policies(config):\n    return {}\n", "config"),
}


@pytest.mark.parametrize("case", BROKEN_HOOKS, ids=list(BROKEN_HOOKS))
def test_a_plugin_with_a_broken_hook_is_reported_and_skipped(tmp_path, case):
    body, expected = BROKEN_HOOKS[case]
    source = "from specdec.hookspecs import hookimpl\n" + body
    fake_distribution(tmp_path, "specdec-bad", {"bad_plugin": source}, {"bad": "bad_plugin"})
    policy_plugin(tmp_path, "specdec-half", "half_plugin", "half")
    with plugins_on_path(tmp_path) as reg:
        [failure] = reg.failures
        assert failure.distribution == "specdec-bad" and expected in failure.error
        assert {"half", "fixed"} <= set(reg.names("policy")) and "p" not in reg.names("policy")


NO_TIMER_PLUGIN = """
import attrs
from specdec.hookspecs import hookimpl
from specdec.proposer import Proposer

def member(self, *args):
    return None

names = {n for n in dir(Proposer) if not n.startswith("_")} | set(Proposer.__annotations__)
NoTimer = attrs.define(type("NoTimer", (), {n: member for n in names - {"forward_seconds"}}))

@hookimpl
def specdec_register_proposers():
    return {"no-timer": NoTimer}
"""


def test_a_strategy_missing_one_protocol_member_is_reported_in_one_line_and_skipped(tmp_path):
    """No member of the protocol is optional: forward_seconds once was, for plugins that predate it."""
    fake_distribution(tmp_path, "specdec-no-timer", {"no_timer": NO_TIMER_PLUGIN}, {"no-timer": "no_timer"})
    policy_plugin(tmp_path, "specdec-half", "half_plugin", "half")
    with plugins_on_path(tmp_path) as reg:
        [failure] = reg.failures
        assert failure.distribution == "specdec-no-timer"
        assert failure.error == "proposer 'no-timer' (NoTimer) lacks forward_seconds of the proposer protocol"
        assert "no-timer" not in reg.names("proposer")
        assert {"half", "fixed"} <= set(reg.names("policy")) and "draft" in reg.names("proposer")


def test_a_member_added_to_a_protocol_is_required_at_once(monkeypatch):
    """The required members are read from the protocol class when a strategy is checked."""
    import specdec.proposer

    class Extended(specdec.proposer.Proposer, Protocol):
        def rewind(self, tokens: int) -> None: ...

    before = members(specdec.proposer.Proposer)
    monkeypatch.setattr(specdec.proposer, "Proposer", Extended)
    assert specdec.registry.protocol_members("proposer") == tuple(sorted({*before, "rewind"}))
    reg = load_registry(entry_points=False)
    [failure] = reg.failures
    assert failure.plugin == "specdec.strategies.proposers"
    assert re.fullmatch(r"proposer '[a-z-]+' \(\w+\) lacks rewind of the proposer protocol", failure.error)
    assert reg.names("proposer") == [] and "fixed" in reg.names("policy")


ORDERED_PLUGIN = """
from specdec.hookspecs import hookimpl
from specdec.strategies.policies import FixedPolicy

@hookimpl({main})
def specdec_register_policies():
    return {{"main": FixedPolicy}}

@hookimpl(specname="specdec_register_policies", {extra})
def also_register_policies():
    return {{"extra": FixedPolicy}}

@hookimpl(wrapper=True, specname="specdec_register_policies")
def first_result_only():
    results = yield
    return results[:1]
"""


@pytest.mark.parametrize("main_options,extra_options,kept", [
    ("", "", "main"),  # pluggy's own order: the implementation registered last is called first
    ("", "tryfirst=True", "extra"),
    ("trylast=True", "", "extra"),
])
def test_hookimpl_options_are_honoured(tmp_path, main_options, extra_options, kept):
    """Hooks are called through pluggy: a wrapper sees the plugin's results in tryfirst/trylast order."""
    source = ORDERED_PLUGIN.format(main=main_options, extra=extra_options)
    fake_distribution(tmp_path, "specdec-ordered", {"ordered": source}, {"ordered": "ordered"})
    with plugins_on_path(tmp_path) as reg:
        assert reg.failures == []
        assert {"main", "extra"} & set(reg.names("policy")) == {kept}
        assert reg.get("policy", kept).distribution == "specdec-ordered"


def test_a_wrapper_acts_on_its_own_plugin_only(tmp_path):
    """Each plugin is called on its own, so no plugin can hide or re-attribute another's strategies."""
    hiding = ("from specdec.hookspecs import hookimpl\n"
              "@hookimpl(wrapper=True, specname='specdec_register_policies')\n"
              "def hide_everything():\n    yield\n    return []\n")
    fake_distribution(tmp_path, "specdec-hiding", {"hiding": hiding}, {"hiding": "hiding"})
    policy_plugin(tmp_path, "specdec-half", "half_plugin", "half")
    with plugins_on_path(tmp_path) as reg:
        assert reg.failures == []
        assert reg.get("policy", "half").distribution == "specdec-half"
        assert reg.get("policy", "fixed").origin.builtin


def test_the_registry_loads_without_the_command_line_parser():
    code = ("import sys; from specdec.plugins import make_policy, registry; registry(); make_policy('fixed', k=2); "
            "print(sorted(m for m in sys.modules if m.startswith('specdec.cli')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_entry_point_naming_a_missing_module_is_reported(tmp_path):
    fake_distribution(tmp_path, "specdec-ghost", {}, {"ghost": "no_such_module_anywhere"})
    with plugins_on_path(tmp_path) as reg:
        [failure] = reg.failures
        assert failure.distribution == "specdec-ghost" and "No module named 'no_such_module_anywhere'" in failure.error


@pytest.mark.parametrize("value,skipped", [("1", {"half_plugin", "solo"}), ("specdec-half", {"half_plugin"}),
                                           ("solo, other", {"solo"}), ("", set())])
def test_specdec_disable_plugins(tmp_path, monkeypatch, value, skipped):
    policy_plugin(tmp_path, "specdec-half", "half_plugin", "half")
    fake_distribution(tmp_path, "specdec-solo", {"solo": POLICY_MODULE.format(cls="Solo", name="solo")}, {"solo": "solo"})
    monkeypatch.setenv("SPECDEC_DISABLE_PLUGINS", value)
    with plugins_on_path(tmp_path) as reg:
        assert {o.plugin for o in reg.disabled} == skipped
        assert ("half" in reg.names("policy")) == ("half_plugin" not in skipped)
        assert ("solo" in reg.names("policy")) == ("solo" not in skipped)
        assert "fixed" in reg.names("policy")


# ----------------------------------------------------------------------------- parameters
def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ConfigurationError, match=r"policy 'fixed' has no parameter 'kk'; parameters: k$"):
        build_strategy(specdec.plugins.registry(), "policy", "fixed", {"kk": "3"})
    with pytest.raises(ConfigurationError, match="has no parameter 'kk'; parameters: k"):
        make_policy("fixed", kk=3)


def test_the_draft_model_is_not_a_parameter():
    with pytest.raises(ConfigurationError, match="proposer 'draft' has no parameter 'model'; parameters: head_tokens"):
        build_strategy(specdec.plugins.registry(), "proposer", "draft", {"model": "x"}, model=object())


@pytest.mark.parametrize("raw,expected", [("four", "parameter 'k' expects int, got 'four'"),
                                          ("2.5", "parameter 'k' expects int, got '2.5'")])
def test_a_bad_value_names_the_parameter_and_the_expected_type(raw, expected):
    with pytest.raises(ConfigurationError, match=re.escape(f"policy 'fixed': {expected}")):
        build_strategy(specdec.plugins.registry(), "policy", "fixed", {"k": raw})


def test_a_value_the_strategy_rejects_names_the_strategy():
    with pytest.raises(ConfigurationError, match=r"policy 'fixed': k must be an integer >= 1, got 0"):
        build_strategy(specdec.plugins.registry(), "policy", "fixed", {"k": "0"})


def test_a_missing_required_parameter_is_named():
    with pytest.raises(ConfigurationError, match="proposer 'draft' needs the parameter\\(s\\): model"):
        make_proposer("draft")


# ----------------------------------------------------------------------------- documentation
HOOKS_DOC = REPO / "docs" / "reference" / "plugins.md"


def hookspec_names() -> list[str]:
    marker = f"{hookspecs.PROJECT}_spec"
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, marker)]


def test_plugin_hooks_are_documented():
    """Every hookspec has a docstring and a heading in the plugin reference (as datasette checks)."""
    names = hookspec_names()
    assert names, "no hookspecs found"
    headings = set(re.findall(r"^#+\s+(\w+)\s*$", HOOKS_DOC.read_text(), flags=re.M))
    undocumented = [n for n in names if n not in headings]
    assert not undocumented, f"document these hooks with a heading in {HOOKS_DOC.relative_to(REPO)}: {undocumented}"
    stale = sorted(h for h in headings if h.startswith(f"{hookspecs.PROJECT}_") and h not in names)
    assert not stale, f"{HOOKS_DOC.relative_to(REPO)} documents hooks that do not exist: {stale}"
    for name in names:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert ":return:" in doc and len(doc.splitlines()) > 2, f"hookspec {name} needs a full docstring"


def test_the_disable_variable_is_documented(capsys):
    assert specdec.plugins.DISABLE_ENV in HOOKS_DOC.read_text()
    for argv in (["--help"], ["plugins", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert specdec.plugins.DISABLE_ENV in capsys.readouterr().out


def test_the_oracle_runs_from_the_command_line_by_name_alone(capsys):
    """`--policy oracle` computes the target's greedy continuation first, then drafts exactly it."""
    common = ["generate", "Once upon a time", "--target", tiny(TINY_TARGET), "--max-new-tokens", "16", "--json"]
    assert main([*common, "--target-only"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*common, "--draft", tiny(TINY_DRAFT), "--policy", "oracle"]) == 0
    captured = capsys.readouterr()
    oracle = json.loads(captured.out)
    assert "analysis only" in captured.err
    assert oracle["ids"] == plain["ids"]
    stats = oracle["stats"]
    assert stats["accepted"] == stats["drafted"] > 0  # it drafts only what the target will say
