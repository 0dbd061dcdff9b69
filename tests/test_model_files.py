"""A damaged or incomplete model is one `specdec: error:` line naming the file and what to do,
never a reader's traceback; pickled weights are refused."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from specdec.integrations.loading import load_model

from specdec.cli import main
from specdec.errors import ModelFileError
from tests.gguf_tools import write_tiny_gguf
from tests.plugin_tools import TINY_TARGET, tiny
from tests.test_cli_errors import assert_one_line_error


def _copy(tmp: Path) -> Path:
    model = tmp / "model"
    shutil.copytree(tiny(TINY_TARGET), model)
    for file in model.iterdir():
        file.chmod(0o644)
    return model


def _truncate(file: Path, size: int) -> None:
    with open(file, "r+b") as handle:
        handle.truncate(size)


def _empty(tmp: Path) -> Path:
    (tmp / "model").mkdir()
    return tmp / "model"


def _no_tokenizer(tmp: Path) -> Path:
    model = _copy(tmp)
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"):
        (model / name).unlink()
    return model


def _truncated_weights(tmp: Path) -> Path:
    model = _copy(tmp)
    _truncate(model / "model.safetensors", 300_000)
    return model


def _garbled_header(tmp: Path) -> Path:
    model = _copy(tmp)
    data = bytearray((model / "model.safetensors").read_bytes())
    data[8:40] = b"x" * 32
    (model / "model.safetensors").write_bytes(bytes(data))
    return model


def _empty_weights(tmp: Path) -> Path:
    model = _copy(tmp)
    (model / "model.safetensors").write_bytes(b"")
    return model


def _no_weights(tmp: Path) -> Path:
    model = _copy(tmp)
    (model / "model.safetensors").unlink()
    return model


def _bad_config(tmp: Path) -> Path:
    model = _copy(tmp)
    (model / "config.json").write_text("{not json")
    return model


def _config_without_type(tmp: Path) -> Path:
    model = _copy(tmp)
    (model / "config.json").write_text(json.dumps({"hidden_size": 64}))
    return model


def _damaged_tokenizer(tmp: Path) -> Path:
    model = _copy(tmp)
    (model / "tokenizer.json").write_text('{"model": 3}')
    (model / "tokenizer.model").unlink()
    return model


def _pickled(tmp: Path) -> Path:
    from safetensors.torch import load_file

    model = _copy(tmp)
    torch.save(load_file(str(model / "model.safetensors")), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    return model


def _truncated_gguf(tmp: Path) -> Path:
    file = write_tiny_gguf(tmp / "model")
    _truncate(file, file.stat().st_size // 2)
    return file.parent


def _not_gguf(tmp: Path) -> Path:
    (tmp / "model").mkdir()
    (tmp / "model" / "model.gguf").write_text("garbage\n")
    return tmp / "model"


DAMAGED: list[tuple[Callable[[Path], Path], tuple[str, ...]]] = [
    (_empty, ("holds no model: no config.json and no .gguf file",)),
    (_no_tokenizer, ("has no tokenizer (tokenizer.json or tokenizer.model)", "copy the tokenizer files")),
    (_truncated_weights, ("model.safetensors is truncated (300000 bytes of 524912)", "copy or download the model again")),
    (_garbled_header, ("model.safetensors has a damaged header",)),
    (_empty_weights, ("model.safetensors is not a safetensors file or is truncated (0 bytes",)),
    (_no_weights, ("holds no weights (model.safetensors)",)),
    (_bad_config, ("cannot read", "config.json (Expecting property name")),
    (_config_without_type, ("config.json names no model_type",)),
    (_damaged_tokenizer, ("cannot load the tokenizer of", "copy or download the model again")),
    (_pickled, ("holds PyTorch pickle weights (pytorch_model.bin), which specdec does not read", "save_pretrained")),
    (_truncated_gguf, ("cannot read", "stories260K.gguf", "the file is damaged or not a model")),
    (_not_gguf, ("model.gguf is not a GGUF file",)),
]


@pytest.mark.parametrize("damage, says", DAMAGED, ids=[d.__name__.strip("_") for d, _ in DAMAGED])
def test_a_damaged_model_is_one_error_line(damage, says, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECDEC_CACHE", str(tmp_path / "cache"))
    model = damage(tmp_path)
    assert main(["generate", "Once", "--target", str(model), "--target-only", "--max-new-tokens", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error("\n".join(line for line in captured.err.splitlines() if not _progress(line)), *says)


def _progress(line: str) -> bool:
    """A line of the GGUF conversion's report (a damaged file is found reading it): its start line,
    or its bar's residue when stderr is not a terminal."""
    return line.startswith("specdec: converting ") or not line.strip() or re.match(r"^\s*\d+%\|.*\| \d+/\d+ ", line) is not None


def test_a_draft_without_a_tokenizer_loads_when_none_is_required(tmp_path):
    model = load_model(_no_tokenizer(tmp_path), require_tokenizer=False)
    assert model.codec is None and model.vocab_size == 512
    with pytest.raises(ModelFileError, match="has no tokenizer"):
        load_model(tmp_path / "model")
