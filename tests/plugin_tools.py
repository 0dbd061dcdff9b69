"""Installing plugin packages for tests, and running the CLI the way a user would.

Packages are installed with pip into a private directory (`pip install --target`) that is put on
`PYTHONPATH` of the CLI subprocesses and on `sys.path` of in-process checks. The effect is the
same as installing into the environment (the distribution's metadata, hence its entry points,
become visible), but nothing leaks into other processes: a plugin installed globally would join
the registry of every test run on the machine, and of the next one if this one crashed before
uninstalling. Deleting the directory is the uninstall.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import specdec.plugins
from specdec.defaults import models_dir

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "examples" / "specdec-example-plugin"
TINY_TARGET = "stories260K"
TINY_DRAFT = "stories260K-draft"


def tiny(name: str) -> str:
    return str(models_dir() / name)


def pip_install(project: Path, site: Path) -> None:
    """Build and install `project` into `site` with pip, offline, from a copy (pip builds in tree)."""
    source = site.parent / f"{project.name}-source"
    shutil.copytree(project, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "--target", str(site), str(source),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install {project.name} failed:\n{done.stdout}\n{done.stderr}"
    importlib.invalidate_caches()


def cli_env(*sites: Path) -> dict[str, str]:
    """Environment of a CLI subprocess: the plugin sites, then the checkout, on PYTHONPATH."""
    env = dict(os.environ)
    for name in ("SPECDEC_DISABLE_PLUGINS", "COLUMNS"):
        env.pop(name, None)
    paths = [str(s) for s in sites] + [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["SPECDEC_MODELS"] = str(models_dir())
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    env["TQDM_DISABLE"] = "1"
    return env


def run_cli(args: list[str], *sites: Path, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`specdec ARGS` in a fresh interpreter (`python -m specdec`, what the `specdec` script runs)."""
    done = subprocess.run(
        [sys.executable, "-m", "specdec", *args], capture_output=True, text=True, env=cli_env(*sites),
        cwd=cwd or REPO, timeout=600,
    )
    if check:
        assert done.returncode == 0, f"specdec {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@contextlib.contextmanager
def plugins_on_path(*sites: Path) -> Iterator[specdec.plugins.Registry]:
    """In this process: put `sites` on sys.path and reload the process-wide registry; undo after."""
    saved_path, saved_registry = list(sys.path), specdec.plugins._REGISTRY
    before = set(sys.modules)
    sys.path[:0] = [str(s) for s in sites]
    try:
        yield specdec.plugins.registry(reload=True)
    finally:
        sys.path[:] = saved_path
        specdec.plugins._REGISTRY = saved_registry
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if any(module_file.startswith(str(s)) for s in sites):
                del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/specdec-example-plugin, pip-installed once per test run."""
    site = tmp_path_factory.mktemp("example-plugin") / "site"
    pip_install(EXAMPLE_PLUGIN, site)
    return site


def fake_distribution(site: Path, name: str, modules: dict[str, str], entry_points: dict[str, str],
                      version: str = "1.0") -> Path:
    """Write an installed-looking distribution (dist-info metadata + modules) into `site`.

    What pip leaves behind, without building anything: fast enough for many in-process cases.
    """
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[specdec]"] + [f"{ep} = {target}" for ep, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    return site
