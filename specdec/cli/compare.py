"""`specdec compare`: one method over another in a saved `specdec bench` run, with intervals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from specdec.bench.compare import CAPTION, COLUMNS, Comparison, compare, timings_from_json
from specdec.bench.report import markdown_table, print_table
from specdec.bench.runner import Timed
from specdec.cli.parser import output_directory
from specdec.errors import ConfigurationError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="one method's speed over another's in a saved bench run, per category, with a bootstrap interval",
        description="Read a `specdec bench` JSON and report, per category and over all prompts, METHOD's tokens/s "
        "over REFERENCE's on the same prompts (each prompt at its fastest repeat), a 90% bootstrap interval "
        "over prompts, the median and the worst per-prompt ratio. A category whose interval lies below a "
        "threshold is a loss the prompts agree on; one that straddles it needs more prompts.",
    )
    parser.add_argument("run_file", metavar="RUN.json", help="a `specdec bench` result (its .json output)")
    add_pair_option(parser, "--pair", required=True)
    parser.add_argument("--out", default=None, help="also write the table as Markdown to this file")
    parser.set_defaults(run=run)


def add_pair_option(parser: argparse.ArgumentParser, flag: str, *, required: bool = False) -> None:
    """METHOD REFERENCE pairs, repeatable (shared by `compare --pair` and `bench --compare`)."""
    parser.add_argument(flag, nargs=2, action="append", default=[], required=required, metavar=("METHOD", "REFERENCE"),
                        help="report METHOD over REFERENCE (method strings as in the run; repeatable)")


def comparisons(records: Sequence[Timed], pairs: Sequence[Sequence[str]]) -> list[Comparison]:
    return [row for method, reference in pairs for row in compare(records, method, reference)]


def render(rows: Sequence[Comparison], title: str) -> str:
    """Print the comparison table and return it as Markdown."""
    dicts = [row.to_dict() for row in rows]
    print_table(dicts, title, COLUMNS)
    return markdown_table(dicts, COLUMNS)


def run(args: argparse.Namespace) -> int:
    path = Path(args.run_file)
    if args.out:
        output_directory(Path(args.out).parent, "--out")
    if not path.is_file():
        raise ConfigurationError(f"no bench result at {str(path)!r}")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{str(path)!r} is not JSON: {error}") from None
    table = render(comparisons(timings_from_json(payload), args.pair), f"specdec compare ({path.name})")
    if args.out:
        Path(args.out).write_text(f"Paired comparison from `{path.name}` ({CAPTION}).\n\n{table}\n")
    return 0
