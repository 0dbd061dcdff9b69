"""Every code block of the cookbook runs, so the docs cannot rot.

How a page is run, top to bottom, in a temporary working directory:
- a block with a title (```` ```python title="pkg/mod.py" ````) is a file: it is written there;
- an untitled ```python block is executed, all blocks of a page sharing one namespace;
- a ```console block holds `$ ` commands: `specdec ...` runs the CLI in a fresh interpreter,
  `pip install DIR` installs with pip into the page's private site directory (see
  tests/plugin_tools.py); the lines after a command are output that must appear in what it printed
  (`...` stands for anything). `$SPECDEC_MODELS` is the models directory. `specdec serve`
  runs with `--print-command` added: its options are checked and its `vllm serve` command built,
  but no server starts (the vLLM tests start real ones).
Any other block fails the test: a block nobody runs is a block that can rot.
The newcomer path is the policy-plugin page run this way, with checks of what it taught.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import re
import shlex
from pathlib import Path

import attrs
import pytest

import specdec.plugins
from specdec.cli import main
from specdec.defaults import models_dir
from tests.plugin_tools import REPO, pip_install, plugins_on_path, run_cli

COOKBOOK = REPO / "docs" / "cookbook"
NEWCOMER_PAGE = "writing-a-policy-plugin.md"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.M | re.S)


@attrs.frozen
class Block:
    lang: str
    title: str | None
    body: str
    line: int


@attrs.frozen
class Command:
    argv: tuple[str, ...]
    output: str


@attrs.define
class PageRun:
    workdir: Path
    site: Path
    files: list[Path] = attrs.field(factory=list)
    installed: list[Path] = attrs.field(factory=list)
    commands: list[Command] = attrs.field(factory=list)
    executed: int = 0


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        info = match["info"].strip()
        lang = info.split()[0] if info else ""
        title = re.search(r'title="([^"]+)"', info)
        indent = len(match["indent"])
        body = "".join(line[indent:] if line.strip() else "\n" for line in match["body"].splitlines(keepends=True))
        found.append(Block(lang, title[1] if title else None, body, text.count("\n", 0, match.start()) + 1))
    return found


def run_page(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PageRun:
    run = PageRun(tmp_path / "work", tmp_path / "site")
    run.workdir.mkdir()
    run.site.mkdir()  # must exist before it goes on sys.path, or imports never look there
    monkeypatch.setenv("SPECDEC_MODELS", str(models_dir()))
    monkeypatch.chdir(run.workdir)
    namespace: dict = {"__name__": "__cookbook__"}
    with plugins_on_path(run.site):
        for block in blocks(page):
            where = f"{page.name}:{block.line}"
            if block.title:
                path = run.workdir / block.title
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(block.body)
                run.files.append(path)
            elif block.lang == "python":
                exec(compile(block.body, where, "exec"), namespace)  # noqa: S102 - the page's own code
                run.executed += 1
            elif block.lang == "console":
                for argv, expected in console_commands(block.body):
                    run_command(run, argv, expected, where)
            else:
                pytest.fail(f"{where}: a ```{block.lang} block that no test runs; give it a title (a file) or make it python/console")
    return run


def console_commands(body: str) -> list[tuple[list[str], list[str]]]:
    commands: list[tuple[list[str], list[str]]] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            text = line[2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            commands.append(([os.path.expandvars(arg) for arg in shlex.split(text)], []))
        elif line.strip():
            assert commands, f"output line before any command: {line!r}"
            commands[-1][1].append(line.strip())
        i += 1
    return commands


def run_command(run: PageRun, argv: list[str], expected: list[str], where: str) -> None:
    if argv[:2] == ["pip", "install"]:
        assert len(argv) > 2 and all(not a.startswith("-") for a in argv[2:]), f"{where}: only `pip install DIR ...` is supported"
        for target in argv[2:]:
            pip_install((run.workdir / target).resolve(), run.site)
            run.installed.append(run.workdir / target)
        reg = specdec.plugins.registry(reload=True)
        ours = {d.metadata["Name"] for d in importlib.metadata.distributions(path=[str(run.site)])}
        broken = [f for f in reg.failures if f.distribution in ours]
        assert not broken, f"{where}: the package installed by `{' '.join(argv)}` failed to load: {broken}"
        output = ""
    elif argv[:2] == ["specdec", "serve"]:
        args = argv[1:]
        cut = args.index("--") if "--" in args else len(args)
        output = run_in_process(args[:cut] + ["--print-command"] * ("--print-command" not in args) + args[cut:], where)
    elif argv[0] == "specdec":
        output = run_in_process(argv[1:], where)
    else:
        pytest.fail(f"{where}: the docs runner does not know the command {argv[0]!r}")
    run.commands.append(Command(tuple(argv), output))
    flat = " ".join(output.split())
    for line in expected:
        if line != "...":
            assert " ".join(line.split()) in flat, f"{where}: `{' '.join(argv)}` did not print {line!r}; it printed:\n{output}"


def run_in_process(args: list[str], where: str) -> str:
    """`specdec ARGS` through the CLI's `main` in this process (the page's plugins are on sys.path).

    A fresh interpreter per command would cost seconds of imports each; the newcomer test runs
    its final command in one as well, to prove that discovery works from a clean start.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exit_:
            code = exit_.code
    output = out.getvalue() + err.getvalue()
    assert code in (0, None), f"{where}: `specdec {' '.join(args)}` exited {code}:\n{output}"
    return output


PAGES = sorted(p.name for p in COOKBOOK.glob("*.md"))


def test_the_cookbook_has_its_pages():
    expected = {"quickstart.md", "choosing-a-policy.md", NEWCOMER_PAGE, "writing-a-proposer-plugin.md",
                "training-pacer.md", "benchmarking.md", "losslessness.md"}
    assert expected <= set(PAGES)


# pages that train a network: slow
SLOW_PAGES = {"training-pacer.md", "eagle.md"}


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=[pytest.mark.slow] if p in SLOW_PAGES else []) for p in PAGES if p != NEWCOMER_PAGE]
)
def test_every_cookbook_block_runs(page, tmp_path, monkeypatch):
    run_page(COOKBOOK / page, tmp_path, monkeypatch)


@pytest.mark.slow  # pip-installs the page's package and runs it in a fresh interpreter
def test_a_newcomer_writes_installs_and_runs_a_policy_plugin_from_the_cookbook(tmp_path, monkeypatch):
    """Following only the policy-plugin page: its files, `pip install`, `specdec generate --policy NAME`."""
    run = run_page(COOKBOOK / NEWCOMER_PAGE, tmp_path, monkeypatch)
    pyprojects = [f for f in run.files if f.name == "pyproject.toml"]
    assert len(pyprojects) == 1 and "[project.entry-points.specdec]" in pyprojects[0].read_text()
    assert run.installed == [pyprojects[0].parent], "the page must pip-install the package it showed"
    generate = [c for c in run.commands if c.argv[:2] == ("specdec", "generate") and "--policy" in c.argv]
    assert generate, "the page must run `specdec generate --policy <name>`"
    name = generate[-1].argv[generate[-1].argv.index("--policy") + 1]
    with plugins_on_path(run.site) as reg:
        entry = reg.get("policy", name)
        assert not entry.origin.builtin, f"--policy {name} is a built-in, not the page's plugin"
        assert entry.distribution == _project_name(pyprojects[0])
    assert run.executed >= 1, "the page should also show the policy used from Python"
    # and once more as the newcomer runs it: a fresh `specdec` process finds the installed plugin
    fresh = run_cli(list(generate[-1].argv[1:]), run.site, cwd=run.workdir)
    assert fresh.stdout.strip() and fresh.stdout in generate[-1].output


def _project_name(pyproject: Path) -> str:
    found = re.search(r'^name\s*=\s*"([^"]+)"', pyproject.read_text(), flags=re.M)
    assert found, f"no project name in {pyproject}"
    return found[1]
