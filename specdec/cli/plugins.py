"""`specdec plugins`: which strategies can be used by name, where they come from, what failed."""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Any

from rich.console import Console
from rich.table import Table

from specdec.plugins import registry
from specdec.registry import DISABLE_ENV, KINDS, Registry


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list the policies and proposers usable by name, and plugins that failed to load",
        description="Lists every length policy and proposer that --policy / --proposer accept: its name, kind, "
        "the distribution and version that provide it, and the parameters --policy-param / --proposer-param "
        "can set (with their types and defaults). Built-ins come from the specdec distribution; third-party "
        "plugins are found through the 'specdec' entry-point group. Plugins that failed to load are listed "
        "with the error and skipped; a name two plugins claim is listed as ambiguous.",
        epilog=f"Set {DISABLE_ENV}=1 to skip every third-party plugin, or a comma-separated list of "
        "entry-point or distribution names to skip just those.",
    )
    parser.add_argument("--kind", choices=KINDS, help="show only policies or only proposers")
    parser.add_argument(
        "--json", action="store_true",
        help="print one JSON object: strategies, failures, conflicts and disabled plugins",
    )
    parser.set_defaults(run=run)


def report(reg: Registry, kind: str | None = None) -> dict[str, Any]:
    """Everything `specdec plugins` shows, as plain data."""
    kinds = (kind,) if kind else KINDS
    strategies = [
        {
            "name": entry.name,
            "kind": entry.kind,
            "distribution": entry.distribution,
            "version": entry.version,
            "plugin": entry.origin.plugin,
            "class": f"{entry.cls.__module__}.{entry.cls.__qualname__}",
            "summary": entry.summary,
            "uses_draft_model": entry.uses_draft_model,
            "parameters": [{"name": p.name, "type": p.type, "default": p.default} for p in entry.parameters()],
        }
        for k in kinds
        for entry in (reg.entries[(k, name)] for name in reg.names(k))
    ]
    return {
        "strategies": strategies,
        "failures": [
            {"plugin": f.plugin, "distribution": f.distribution, "version": f.version, "error": f.error}
            for f in reg.failures
        ],
        "conflicts": [
            {"kind": k, "name": name, "sources": [str(e.origin) for e in entries]}
            for (k, name), entries in sorted(reg.conflicts.items())
            if k in kinds
        ],
        "disabled": [{"plugin": o.plugin, "distribution": o.distribution, "version": o.version} for o in reg.disabled],
    }


def run(args: argparse.Namespace) -> int:
    data = report(registry(), args.kind)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    # wide enough for the parameter column when piped, the terminal's width otherwise
    console = Console(width=None if Console().is_terminal else max(shutil.get_terminal_size((160, 24)).columns, 160))
    table = Table(title="strategies usable by name")
    for column in ("name", "kind", "distribution", "version", "parameters"):
        table.add_column(column, overflow="fold")
    for s in data["strategies"]:
        params = ", ".join([_param_text(p) for p in s["parameters"]] + (["(uses --draft)"] if s["uses_draft_model"] else []))
        table.add_row(s["name"], s["kind"], s["distribution"], s["version"], params or "-")
    console.print(table)
    if data["conflicts"]:
        conflicts = Table(title="ambiguous names (unusable until one provider is removed or disabled)")
        for column in ("name", "kind", "provided by"):
            conflicts.add_column(column, overflow="fold")
        for c in data["conflicts"]:
            conflicts.add_row(c["name"], c["kind"], "\n".join(c["sources"]))
        console.print(conflicts)
    if data["failures"]:
        failures = Table(title="plugins that failed to load (skipped)")
        for column in ("plugin", "distribution", "version", "error"):
            failures.add_column(column, overflow="fold")
        for f in data["failures"]:
            failures.add_row(f["plugin"], f["distribution"], f["version"], f["error"])
        console.print(failures)
    if data["disabled"]:
        names = ", ".join(f"{d['distribution']} ({d['plugin']})" for d in data["disabled"])
        console.print(f"skipped by {DISABLE_ENV}: {names}")
    return 0


def _param_text(p: dict[str, Any]) -> str:
    return f"{p['name']}: {p['type']}" + (f" = {p['default']}" if p["default"] is not None else " (required)")
