"""MkDocs hook: fill in the parts of the docs that are generated from the code, so they cannot rot.

`<!-- specdec:strategies -->` becomes a table of the built-in policies and proposers (name,
parameters with types and defaults, first docstring line), read from the same registry the CLI
uses; `<!-- specdec:cli -->` becomes the `--help` text of `specdec` and of every subcommand.
Only built-ins are listed, so the site does not depend on which plugins the build machine has.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path
from typing import Any

import specdec  # the installed package (the README's commands install this checkout editable)

ROOT = Path(__file__).resolve().parents[2]

STRATEGIES_MARKER = "<!-- specdec:strategies -->"
CLI_MARKER = "<!-- specdec:cli -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if STRATEGIES_MARKER in markdown:
        markdown = markdown.replace(STRATEGIES_MARKER, strategies_table())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_help())
    return markdown


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def strategies_table() -> str:
    from specdec.plugins import load_registry
    from specdec.registry import KINDS

    if not Path(specdec.__file__).resolve().is_relative_to(ROOT):
        raise RuntimeError(f"documenting {ROOT}, but specdec was imported from {specdec.__file__}")
    registry = load_registry(entry_points=False)
    if registry.failures:
        raise RuntimeError(f"built-in strategies failed to load: {registry.failures}")
    rows = ["| name | kind | parameters | what it does |", "|---|---|---|---|"]
    for kind in KINDS:
        for name in registry.names(kind):
            entry = registry.entries[(kind, name)]
            params = [f"`{p}`" for p in entry.parameters()]
            if entry.uses_draft_model:
                params.append("the draft model (`--draft`)")
            rows.append(f"| `{name}` | {kind} | {_cell(', '.join(params) or '-')} | {_cell(entry.summary)} |")
    return "\n".join(rows)


def cli_help() -> str:
    from specdec.cli import COMMANDS, build_parser

    parser = build_parser()
    sections = ["### specdec", "", "```text", _help_text(parser), "```"]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in COMMANDS:
        sections += ["", f"### specdec {name}", "", "```text", _help_text(subparsers.choices[name]), "```"]
    return "\n".join(sections)


def _help_text(parser: argparse.ArgumentParser) -> str:
    out = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix the width of the page
    try:
        with contextlib.redirect_stdout(out):
            parser.print_help()
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return out.getvalue().rstrip()
