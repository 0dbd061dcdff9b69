"""A target directory vLLM can load, from any model directory specdec loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from specdec.errors import ModelNotFoundError


def vllm_model_dir(source: str | os.PathLike) -> Path:
    """`source` as a directory vLLM loads: a GGUF directory becomes specdec's cached safetensors
    conversion, and a config that still names the GGUF quantization (vLLM refuses it; the weights
    are plain) is served from a sibling directory whose config drops it, the files linked."""
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(f"model path {str(source)!r} is not a directory")
    if not (path / "config.json").exists() and any(path.glob("*.gguf")):
        from specdec.integrations.loading import load_model  # converts once, then loads the cached copy

        path = Path(load_model(path, require_tokenizer=False).model.name_or_path)
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{str(source)!r} holds a GGUF file but no converted copy could be cached (see SPECDEC_CACHE)")
    config = json.loads((path / "config.json").read_text())
    quantization = config.get("quantization_config") or {}
    if quantization.get("quant_method") != "gguf" or any(path.glob("*.gguf")):
        return path
    clean = path.with_name(path.name + "-vllm")
    if not (clean / "config.json").exists():
        tmp = clean.with_name(clean.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for item in path.iterdir():
            if item.name != "config.json":
                (tmp / item.name).symlink_to(item.resolve())
        del config["quantization_config"]
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if clean.exists():  # another process made it meanwhile
            shutil.rmtree(tmp)
        else:
            tmp.replace(clean)
    return clean
