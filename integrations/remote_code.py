"""Refusing models that ship their own code.

A model directory whose config names Python modules (`auto_map`) for an architecture transformers
does not implement can only be loaded by importing those modules, and transformers then asks on
the terminal whether to run them. specdec never runs code shipped with a model: every load passes
`trust_remote_code=False` (`NO_REMOTE_CODE`), and `refuse_custom_code` turns such a directory into
one line saying so, before transformers reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from specdec.errors import ConfigurationError

NO_REMOTE_CODE: dict[str, Any] = {"trust_remote_code": False}  # for every from_pretrained call


def refuse_custom_code(directory: Path) -> None:
    """Raise `ConfigurationError` if the model or the tokenizer in `directory` needs its own code."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    config = _json(directory / "config.json")
    model_type = config.get("model_type")
    if config.get("auto_map") and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigurationError(
            f"the model in {directory} needs its own code ({_modules(config['auto_map'])}, named in config.json): "
            f"specdec never runs code shipped with a model; use a model whose architecture transformers implements "
            f"(model_type {model_type!r} is not one)"
        )
    tokenizer = _json(directory / "tokenizer_config.json")
    name = tokenizer.get("tokenizer_class")
    if tokenizer.get("auto_map") and not (isinstance(name, str) and tokenizer_class_from_name(name) is not None):
        raise ConfigurationError(
            f"the tokenizer in {directory} needs its own code ({_modules(tokenizer['auto_map'])}, named in "
            f"tokenizer_config.json): specdec never runs code shipped with a model; use a tokenizer transformers "
            f"implements (tokenizer_class {name!r} is not one), or pass tokenizer="
        )


def _json(path: Path) -> dict[str, Any]:
    """A JSON object file's content; {} if absent or unreadable (the model's file checks report that)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _modules(auto_map: Any) -> str:
    names = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
    flat = [n for value in names for n in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(n, str)]
    return ", ".join(sorted(set(flat))) or "auto_map"
