"""`specdec --help` and every subcommand's `--help` are complete: nothing undocumented."""

from __future__ import annotations

import argparse

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
