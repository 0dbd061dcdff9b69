"""A model that ships its own code is refused in one line, and its code never runs: not even when
a terminal would answer transformers' question "run the custom code?" with yes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from specdec import ConfigurationError, Decoder
from specdec.integrations.loading import load_model
from tests.plugin_tools import REPO, cli_env
from tests.test_remote_code import CASES, CONFIG_CODE, copy_of_tiny, custom_model, edit_json


@pytest.fixture(autouse=True)
def modules_cache(tmp_path, monkeypatch):
    """transformers copies a model's code here before running it: never the user's cache."""
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))


@pytest.mark.parametrize("case", CASES)
def test_a_model_with_its_own_code_is_refused_before_it_is_read(tmp_path, case):
    make, says = CASES[case]
    directory, marker = make(tmp_path)
    for load in (load_model, Decoder):
        with pytest.raises(ConfigurationError, match="specdec never runs code shipped with a model") as error:
            load(directory)
        assert says.format(directory) in str(error.value)
    assert not marker.exists()


def test_code_beside_an_architecture_transformers_implements_is_not_run(tmp_path):
    directory, marker = copy_of_tiny(tmp_path)
    (directory / "configuration_custom.py").write_text(CONFIG_CODE.format(marker=str(marker)))
    edit_json(directory / "config.json", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    assert load_model(directory).vocab_size == 512
    assert not marker.exists()


def test_the_cli_refuses_even_with_yes_on_stdin(tmp_path):
    directory, marker = custom_model(tmp_path)
    env = {**cli_env(), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run(
        [sys.executable, "-m", "specdec", "generate", "Hi", "--target", str(directory), "--target-only", "--max-new-tokens", "2"],
        input="y\ny\ny\n", capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"specdec: error: the model in {directory} needs its own code")
    assert not marker.exists()
