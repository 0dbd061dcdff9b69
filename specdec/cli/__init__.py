"""The `specdec` command line: one module per subcommand, registered in `COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import sys

from specdec.errors import SpecdecError

# subcommand name -> module defining `add_parser(subparsers)` and `run(args) -> int`
COMMANDS = {
    "generate": "specdec.cli.generate",
    "demo": "specdec.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specdec", description="Exactly lossless speculative decoding with adaptive drafting."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SpecdecError as error:
        print(f"specdec: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
