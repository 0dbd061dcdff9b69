"""The argument parser every `specdec` command uses: help wrapped without breaking names at
hyphens, and a bad option value reported as one line, `specdec: error: ...`, exit code 2 (with
`--json`, also as `{"error": ...}` on stdout).

Subcommand parsers inherit the class from `build_parser`'s (argparse's `add_subparsers` makes
them with the parent's class), so a command module's `subparsers.add_parser(...)` gets both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

from specdec.errors import ConfigurationError, SpecdecError

EXIT_USAGE = 2  # argparse's exit code for a bad command line, also used for `SpecdecError`s


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` columns, broken at spaces only: method names such as
    `target-only` or `hf-assisted-int8` and long values stay whole (a longer word overflows)."""
    return textwrap.wrap(text, max(width, 11), break_on_hyphens=False, break_long_words=False)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, wrapping at spaces only (see `_wrap`)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return _wrap(self._whitespace_matcher.sub(" ", text).strip(), width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        flat = self._whitespace_matcher.sub(" ", text).strip()
        return "\n".join(indent + line for line in _wrap(flat, width - len(indent)))


class RawDescriptionHelpFormatter(HelpFormatter):
    """Description and epilog printed as written (the top-level help's environment table)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


def one_line(message: str) -> str:
    """`message` on one line (a multi-line error would read as several)."""
    return " ".join(message.split())


class UsageError(SpecdecError):
    """A bad command line, as argparse reports it."""


def report_error(message: str, *, as_json: bool) -> int:
    """Print `specdec: error: MESSAGE` on stderr (and `{"error": MESSAGE}` on stdout with --json,
    so a script reading stdout gets an object); returns `EXIT_USAGE`."""
    line = one_line(message)
    if as_json:
        print(json.dumps({"error": line}))
    print(f"specdec: error: {line}", file=sys.stderr)
    return EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse, with `HelpFormatter` by default and one-line errors.

    A bad value raises `UsageError("MESSAGE (see `specdec COMMAND --help`)")`, which
    `specdec.cli.main` reports as it reports a `SpecdecError` raised by a command: one line on
    stderr, exit code `EXIT_USAGE`.
    """

    def __init__(self, *args: Any, formatter_class: type[argparse.HelpFormatter] = HelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, 1, "an integer >= 1")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, 0, "an integer >= 0")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(text, float, 0.0, "a finite number >= 0")


def seed(text: str) -> int:
    """argparse type: a seed torch takes (an integer of 64 bits, signed or not)."""
    from specdec.generation_options import SEEDS

    return _number(text, int, SEEDS[0], f"an integer from {SEEDS[0]} to {SEEDS[1]}", high=SEEDS[1])


def _number(text: str, kind: type, low: float, expected: str, *, high: float = float("inf")) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not (low <= value < float("inf") and value <= high):  # NaN fails every comparison
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def output_directory(directory: str | os.PathLike, flag: str) -> Path:
    """Create the output `directory` now, before any work (a run's results are written at its
    end); a path that cannot be a directory is a `ConfigurationError` naming `flag`."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(f"{flag}: cannot create the directory {str(directory)!r} ({error.strerror or error})") from None
    return path
