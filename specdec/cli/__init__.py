"""The `specdec` command line: one module per subcommand, registered in `COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import sys

from specdec.cli.parser import Parser, RawDescriptionHelpFormatter, report_error
from specdec.errors import SpecdecError

# subcommand name -> module defining `add_parser(subparsers)` and `run(args) -> int`
COMMANDS = {
    "generate": "specdec.cli.generate",
    "demo": "specdec.cli.demo",
    "bench": "specdec.cli.bench",
    "ceiling": "specdec.cli.ceiling",
    "compare": "specdec.cli.compare",
    "serve": "specdec.cli.serve",
    "plugins": "specdec.cli.plugins",
    "train-pacer": "specdec.cli.train_pacer",
    "train-eagle": "specdec.cli.train_eagle",
}

EPILOG = """environment:
  SPECDEC_MODELS           directory holding the default model pair (smollm2-135m-instruct/, smollm2-draft/)
  SPECDEC_CACHE            where converted model copies and GEMM plans are cached (default ~/.cache/specdec)
  SPECDEC_DISABLE_PLUGINS  1 skips every third-party plugin; NAME,NAME skips those entry points or distributions
  SPECDEC_GEMM             auto (default: the fastest GEMM kernel per weight shape and row count, timed once
                           per machine and saved in the cache), fresh (timed in this process, nothing saved),
                           or linear, mkl-packed, onednn to use that kernel everywhere

Run `specdec COMMAND --help` for the options of one command."""


def build_parser() -> argparse.ArgumentParser:
    from specdec import __version__

    parser = Parser(
        prog="specdec",
        description="Exactly lossless speculative decoding with adaptive drafting: a length policy decides\n"
        "how many tokens to draft, a proposer drafts them, and the verifier keeps exactly what the\n"
        "target model would have produced.",
        epilog=EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"specdec {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv  # before parsing succeeds
    try:
        args = build_parser().parse_args(argv)
        as_json = bool(getattr(args, "json", False))
        return int(args.run(args) or 0)
    except SpecdecError as error:
        return report_error(str(error), as_json=as_json)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
