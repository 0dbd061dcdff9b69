"""The distribution ships every package of the checkout (a missing one breaks only non-editable installs),
and the core imports no strategy and no application built on it."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_in_the_distribution():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for name, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert found == listed


# the applications on top of the core (the command line, benchmarks): they may name built-in strategies
APPLICATIONS = ("cli", "bench", "__main__.py")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_names_no_strategy_and_no_application():
    """The core reaches strategies only through the registry, so built-ins and plugins are equals."""
    core = [p for p in (ROOT / "specdec").rglob("*.py") if p.relative_to(ROOT / "specdec").parts[0] not in APPLICATIONS]
    upward = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.startswith(("specdec.strategies", "specdec.cli", "specdec.bench"))
        )
        for path in core
    }
    assert {path: modules for path, modules in upward.items() if modules} == {}
