"""`specdec --help` and every subcommand's `--help` are complete: nothing undocumented."""

from __future__ import annotations

import argparse
import re

import pytest

from specdec.cli import COMMANDS, build_parser, main


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_listed_with_a_summary(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help for choice in action._choices_actions}
    assert set(summaries) == set(COMMANDS) == set(subcommands())
    for name, summary in summaries.items():
        assert summary, f"`specdec {name}` has no one-line help in `specdec --help`"
        assert name in text
    for variable in ("SPECDEC_MODELS", "SPECDEC_CACHE", "SPECDEC_DISABLE_PLUGINS"):
        assert variable in text


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_every_command_is_explained(name, capsys):
    parser = subcommands()[name]
    assert parser.description and len(parser.description) > 40, f"`specdec {name} --help` needs a description"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"`specdec {name}`: {label} has no help text"
        if action.option_strings and action.choices is None and action.default not in (None, False, [], argparse.SUPPRESS):
            shown = "default" in action.help or "%(default)" in action.help
            assert shown, f"`specdec {name}`: {label} does not say its default ({action.default!r})"
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0 and parser.prog in capsys.readouterr().out


def help_text(name: str, columns: int, monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))  # argparse wraps to the terminal's width
    with pytest.raises(SystemExit):
        main([name, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_wraps_at_spaces_only(name, monkeypatch, capsys):
    """Wrapped to a narrow terminal, the help holds the same words as unwrapped: method names
    such as `target-only` or `hf-assisted-heuristic` are never split at their hyphens."""
    wide = help_text(name, 1000, monkeypatch, capsys).split()
    for columns in (50, 80):
        assert sorted(help_text(name, columns, monkeypatch, capsys).split()) == sorted(wide)


def test_bench_help_shows_method_names_whole(monkeypatch, capsys):
    text = help_text("bench", 80, monkeypatch, capsys)
    for name in ("target-only;fixed:k=2;fixed:k=4;hf-assisted", "hf-assisted-heuristic", "hf-prompt-lookup", "-int8"):
        assert name in text  # on one line


def test_help_prints_percent_signs_once(monkeypatch, capsys):
    for name in COMMANDS:
        assert "%%" not in help_text(name, 100, monkeypatch, capsys)
    assert "a 90% bootstrap interval" in " ".join(help_text("compare", 100, monkeypatch, capsys).split())


@pytest.mark.parametrize("name", [n for n, p in subcommands().items() if any(a.dest == "policy" for a in p._actions)])
def test_the_policy_a_command_says_it_uses_is_the_one_it_uses(name, monkeypatch, capsys):
    parsed = build_parser().parse_args([name] + (["PROMPT"] if name == "generate" else []))
    text = " ".join(help_text(name, 100, monkeypatch, capsys).split())
    assert text.count(f"(default: {parsed.policy})") == 1
    others = [p for p in ("fixed", "auto") if p != parsed.policy]
    assert not any(f"default: {other}" in text or f"policy is `{other}`" in text for other in others)


def test_demo_help_states_its_default_policy_auto(monkeypatch, capsys):
    text = " ".join(help_text("demo", 100, monkeypatch, capsys).split())
    assert "--policy POLICY length policy name (default: auto)" in text
    assert "default: fixed" not in text and len(re.findall(r"\bauto\b", text)) == 1
