"""specdec.testing as a plugin author gets it: installed (not editable) with specdec in a fresh
environment, it proves the example plugin's policy and proposer exactly lossless and catches a
planted bug in a copy of that proposer.

The environment is a venv with the system's site-packages visible (torch is not installed again),
with specdec and the example built from copies and installed offline, so the check runs the
installed `specdec.testing`, not the checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin_tools import EXAMPLE_PLUGIN, REPO, cli_env

pytestmark = pytest.mark.slow  # builds and installs two packages into a new environment

# the parts of the checkout that make up the distribution
DISTRIBUTION = ["pyproject.toml", "README.md", "specdec", "strategies", "integrations"]

PLUGIN_AUTHOR = r'''
import json
import sys

import attrs
import torch
from hypothesis import settings
from hypothesis import strategies as st

import specdec.testing
from specdec.strategies.proposers import DraftModelProposer
from specdec.testing import assert_lossless
from specdec_example_plugin.bigram import BigramProposer
from specdec_example_plugin.budget import BudgetPolicy

budgets = lambda pair: st.builds(BudgetPolicy, threshold=st.floats(0.0, 1.0), max_draft=st.integers(1, 4))
assert_lossless(policy_factory=budgets, proposer_factory=lambda pair: DraftModelProposer(pair.draft), max_examples=30)
assert_lossless(policy_factory=budgets, proposer_factory=lambda pair: st.builds(BigramProposer, min_count=st.integers(1, 2)),
                max_examples=30)


@attrs.define
class WrongQBigram(BigramProposer):
    """Planted bug: reports its deterministic tokens as drawn from a uniform distribution."""

    vocab: int = 3

    def propose(self, request):
        draft = super().propose(request)
        uniform = torch.full((self.vocab,), 1.0 / self.vocab, dtype=torch.float64)
        return attrs.evolve(draft, q=tuple(uniform for _ in draft.tokens))


# the hunt runs fixed examples, so it meets the bug on every run, not on most
settings.register_profile("hunt", derandomize=True, database=None)
settings.load_profile("hunt")
try:
    assert_lossless(policy_factory=budgets, proposer_factory=lambda pair: WrongQBigram(vocab=pair.vocab), max_examples=100,
                    shrink=False)
except AssertionError as report:
    caught = str(report)
else:
    caught = None
print(json.dumps({"testing": specdec.testing.__file__, "prefix": sys.prefix, "caught": caught}))
'''


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_installed_package_proves_the_example_lossless_and_catches_a_planted_bug(tmp_path):
    source = tmp_path / "specdec-source"
    source.mkdir()
    for part in DISTRIBUTION:
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy2
        copy(REPO / part, source / part, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    plugin = shutil.copytree(EXAMPLE_PLUGIN, tmp_path / "plugin-source", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))

    env = cli_env()
    env.pop("PYTHONPATH")  # the checkout must not be importable: only the installed copy
    venv = tmp_path / "venv"
    # no pip of its own: the venv's bundled setuptools would shadow the system's newer one
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], env)
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check"]
    run(pip + [str(source), str(plugin)], env)

    done = run([python, "-c", PLUGIN_AUTHOR], dict(env, PYTHONSAFEPATH="1"))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["testing"]).is_relative_to(venv), f"specdec.testing came from {result['testing']}, not the new environment"
    assert result["caught"], "assert_lossless let a proposer with a wrong q pass"
    assert "total variation" in result["caught"] and "WrongQBigram" in result["caught"]
