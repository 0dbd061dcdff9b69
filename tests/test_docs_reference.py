"""The API reference documents every public name, and the docs cite only pages that exist.

"Public" means, precisely:
- every name in `specdec.__all__`, `specdec.testing.__all__` and `specdec.integrations.__all__`;
- the model loader `specdec.integrations.loading.load_model` and the model it returns, `HFModel`;
- every function and class defined in the modules a plugin is written against:
  `specdec.plugins`, `specdec.registry`, `specdec.hookspecs` (its hooks and `hookimpl`),
  `specdec.policy` and `specdec.proposer`;
- every built-in policy and proposer class, as registered;
- every specdec object that a code block of the docs or the README imports.

A name is documented when a `:::` directive of `docs/reference/*.md` renders it: the directive
names the object itself, or a module whose members include it (its `__all__`, else the functions
and classes defined in it, less the directive's `filters`). Directives name the checkout's
`strategies` and `integrations` folders, which are installed as `specdec.strategies` and
`specdec.integrations`; objects are compared by identity, so a name documented where it is
defined counts wherever it is re-exported.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
import yaml

import specdec
import specdec.hookspecs
import specdec.integrations
import specdec.plugins
import specdec.policy
import specdec.proposer
import specdec.registry
import specdec.testing
from specdec.integrations.hf import HFModel
from specdec.integrations.loading import load_model
from tests.plugin_tools import REPO

DOCS = REPO / "docs"
REFERENCE = DOCS / "reference"
DIRECTIVE = re.compile(r"^::: *(?P<path>[\w.]+) *\n(?P<options>(?:[ \t]+\S.*\n?)*)", re.M)
FENCE = re.compile(r"^[ \t]*```+python[^\n]*\n(?P<body>.*?)^[ \t]*```+[ \t]*$", re.M | re.S)
# the checkout folders that setuptools installs inside specdec (pyproject's package-dir)
INSTALLED_AS = {"strategies": "specdec.strategies", "integrations": "specdec.integrations"}
WRITTEN_AGAINST = (specdec.plugins, specdec.registry, specdec.hookspecs, specdec.policy, specdec.proposer)


def import_object(path: str) -> Any:
    head, _, rest = path.partition(".")
    path = f"{INSTALLED_AS[head]}.{rest}" if head in INSTALLED_AS and rest else INSTALLED_AS.get(path, path)
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(path)


def module_members(module: ModuleType, filters: list[str]) -> Iterator[Any]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, o in vars(module).items() if (inspect.isclass(o) or inspect.isfunction(o))
                 and o.__module__ == module.__name__]
    positive = [f for f in filters if not f.startswith("!")]
    for name in names:
        if any(re.search(f[1:], name) for f in filters if f.startswith("!")):
            continue
        if positive and not any(re.search(f, name) for f in positive):
            continue
        yield getattr(module, name)


def documented(pages: list[Path] | None = None) -> dict[int, str]:
    """id(object) -> where it is documented, for every object the reference pages render."""
    found: dict[int, str] = {}
    for page in pages or sorted(REFERENCE.glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text()):
            where = f"reference/{page.name}: ::: {match['path']}"
            obj = import_object(match["path"])
            found[id(obj)] = where
            if inspect.ismodule(obj):
                options = (yaml.safe_load(textwrap.dedent(match["options"])) or {}).get("options", {}) if match["options"].strip() else {}
                filters = options.get("filters", ["!^_"])
                for member in module_members(obj, filters):
                    found.setdefault(id(member), where)
    return found


def imported_by_docs() -> dict[str, Any]:
    """Every specdec object imported by a python block of the docs or the README."""
    names: dict[str, Any] = {}
    for page in [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for block in FENCE.finditer(page.read_text()):
            try:
                tree = ast.parse(textwrap.dedent(block["body"]))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "specdec":
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        obj = getattr(module, alias.name)
                        if not inspect.ismodule(obj):
                            names[f"{node.module}.{alias.name}"] = obj
    return names


def public_names() -> dict[str, Any]:
    names: dict[str, Any] = {}
    for module in (specdec, specdec.testing, specdec.integrations):
        names.update({f"{module.__name__}.{n}": getattr(module, n) for n in module.__all__})
    names["specdec.integrations.loading.load_model"] = load_model
    names["specdec.integrations.hf.HFModel"] = HFModel
    for module in WRITTEN_AGAINST:
        for name, obj in vars(module).items():
            if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__:
                names[f"{module.__name__}.{name}"] = obj
    names["specdec.hookspecs.hookimpl"] = specdec.hookspecs.hookimpl
    builtins = specdec.plugins.load_registry(entry_points=False)
    for (kind, name), entry in builtins.entries.items():
        names[f"{kind} {name!r} ({entry.cls.__module__}.{entry.cls.__qualname__})"] = entry.cls
    names.update(imported_by_docs())
    return names


def undocumented(pages: list[Path] | None = None) -> list[str]:
    found = documented(pages)
    return sorted(name for name, obj in public_names().items() if id(obj) not in found)


def test_every_public_name_has_a_reference_entry():
    missing = undocumented()
    assert not missing, f"add a `::: path` entry to a page of docs/reference/ for: {missing}"


def test_the_check_notices_a_missing_entry(tmp_path):
    """Remove one entry from a copy of the reference and the check names exactly that object."""
    pages = sorted(REFERENCE.glob("*.md"))
    api = REFERENCE / "api.md"
    assert "::: specdec.samplers.TorchSampler\n" in api.read_text()
    copy = tmp_path / "api.md"
    copy.write_text(api.read_text().replace("::: specdec.samplers.TorchSampler\n", ""))
    assert undocumented([copy if p == api else p for p in pages]) == ["specdec.TorchSampler"]


def test_the_reference_names_only_what_exists():
    for page in sorted(REFERENCE.glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text()):
            import_object(match["path"])  # raises for a stale entry (mkdocs --strict too, with less context)


# ----------------------------------------------------------------------------- cited pages
CITED = re.compile(r"\bdocs/[\w./-]+\.md\b")
SOURCES = ["README.md", "CHANGELOG.md", "pyproject.toml", "mkdocs.yml", "specdec", "strategies", "integrations",
           "tests", "benchmarks", "examples", "docs"]


def cited_pages() -> Iterator[tuple[str, str]]:
    for source in SOURCES:
        root = REPO / source
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.suffix in {".py", ".md", ".toml", ".yml"}]
        for path in files:
            if "_build" in path.parts or path == Path(__file__):
                continue
            for cited in CITED.findall(path.read_text(errors="replace")):
                yield str(path.relative_to(REPO)), cited


def test_every_cited_docs_page_exists():
    """A docstring, page or README that sends the reader to docs/X.md sends them somewhere real."""
    missing = sorted({f"{where} cites {cited}" for where, cited in cited_pages() if not (REPO / cited).is_file()})
    assert not missing, missing


def test_every_page_is_on_the_site():
    """Every Markdown page under docs/ is in the navigation (mkdocs only warns about omitted pages)."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text().replace("!!python/name:", ""))

    def pages(nav: Any) -> Iterator[str]:
        if isinstance(nav, str):
            yield nav
        elif isinstance(nav, list):
            for item in nav:
                yield from pages(item)
        elif isinstance(nav, dict):
            for value in nav.values():
                yield from pages(value)

    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk - in_nav == set(), f"pages missing from mkdocs.yml's nav: {sorted(on_disk - in_nav)}"
    assert in_nav - on_disk == set(), f"nav entries without a page: {sorted(in_nav - on_disk)}"
