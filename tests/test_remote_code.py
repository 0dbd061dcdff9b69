"""A model directory whose model or tokenizer needs the code it ships is recognised from its JSON
files alone (the loading tests, `test_remote_code_loading.py`, check that it is never run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from specdec import ConfigurationError
from specdec.integrations.remote_code import refuse_custom_code
from tests.models import model_path
from tests.plugin_tools import TINY_TARGET

CONFIG_CODE = """import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import LlamaConfig
class CustomConfig(LlamaConfig):
    model_type = "tiny_custom"
"""
MODEL_CODE = """from transformers import LlamaForCausalLM
from .configuration_custom import CustomConfig
class CustomForCausalLM(LlamaForCausalLM):
    config_class = CustomConfig
"""
TOKENIZER_CODE = """import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import PreTrainedTokenizerFast
class CustomTokenizer(PreTrainedTokenizerFast):
    pass
"""


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def copy_of_tiny(tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the tiny target, the marker file its code would write)."""
    directory = tmp_path / "custom"
    shutil.copytree(model_path(TINY_TARGET), directory)
    return directory, tmp_path / "RAN"


def custom_model(tmp_path: Path) -> tuple[Path, Path]:
    directory, marker = copy_of_tiny(tmp_path)
    (directory / "configuration_custom.py").write_text(CONFIG_CODE.format(marker=str(marker)))
    (directory / "modeling_custom.py").write_text(MODEL_CODE)
    auto_map = {"AutoConfig": "configuration_custom.CustomConfig", "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    edit_json(directory / "config.json", model_type="tiny_custom", architectures=["CustomForCausalLM"], auto_map=auto_map)
    return directory, marker


def custom_tokenizer(tmp_path: Path) -> tuple[Path, Path]:
    directory, marker = copy_of_tiny(tmp_path)
    (directory / "tokenization_custom.py").write_text(TOKENIZER_CODE.format(marker=str(marker)))
    auto_map = {"AutoTokenizer": [None, "tokenization_custom.CustomTokenizer"]}
    edit_json(directory / "tokenizer_config.json", tokenizer_class="CustomTokenizer", auto_map=auto_map)
    return directory, marker


CASES = {
    "model": (custom_model, "the model in {} needs its own code (configuration_custom.CustomConfig, modeling_custom.CustomForCausalLM"),
    "tokenizer": (custom_tokenizer, "the tokenizer in {} needs its own code (tokenization_custom.CustomTokenizer"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_model_or_tokenizer_needing_its_own_code_is_refused(tmp_path, case):
    make, says = CASES[case]
    directory, _ = make(tmp_path)
    with pytest.raises(ConfigurationError, match="specdec never runs code shipped with a model") as error:
        refuse_custom_code(directory)
    assert says.format(directory) in str(error.value)


def test_code_beside_an_architecture_transformers_implements_is_not_needed(tmp_path):
    directory, _ = copy_of_tiny(tmp_path)
    edit_json(directory / "config.json", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    edit_json(directory / "tokenizer_config.json", auto_map={"AutoTokenizer": [None, "tokenization_custom.CustomTokenizer"]})
    refuse_custom_code(directory)
    refuse_custom_code(Path(model_path(TINY_TARGET)))
