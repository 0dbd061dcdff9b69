"""Loading a model by path or hub id into an `HFModel` (`load_model`).

What a transformers user holds is accepted as it is: a path (str or `pathlib.Path`), a hub id
already cached here, or a loaded `PreTrainedModel` (its tokenizer is then the one passed, else
the one its `name_or_path` names, if that loads without a download). A directory holding only a
`.gguf` file is read through transformers' GGUF reader (which dequantises to float32,
slowly) once, and a safetensors copy is cached under `SPECDEC_CACHE` so later loads are fast
(`gguf_cache`). A directory's files are checked first (`model_files`), so that a damaged model
is one error naming the file instead of a reader's traceback. Kept apart from `hf.py`, which
holds the loaded model and its forward.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from specdec.errors import ConfigurationError, ModelFileError, ModelNotFoundError

from .gguf_cache import InMemory, converted_gguf
from .hf import HFModel
from .model_files import AGAIN, check_model_directory, has_tokenizer
from .remote_code import NO_REMOTE_CODE, refuse_custom_code

# what transformers raises on files it cannot make sense of (after `check_model_directory`)
_LOAD_ERRORS = (ValueError, KeyError, IndexError, TypeError, RuntimeError)


def load_model(
    source: Any,
    *,
    tokenizer: Any = None,
    require_tokenizer: bool = True,
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    attn_implementation: str | None = None,
    lean: bool = True,
) -> HFModel:
    """Load a local directory (safetensors or GGUF) or a locally cached hub id.

    `source` may also be a loaded transformers `PreTrainedModel` (`dtype` is then its own); a
    `tokenizer` given is used instead of the one found beside the model. A transformers model
    whose tokenizer cannot be found is an error unless `require_tokenizer=False` (a draft needs
    none: the model then decodes token ids only).
    `lean=False` keeps transformers' own forward for llama models too (see `decoder_stack`), as
    does asking for a transformers attention implementation.
    """
    from transformers import AutoModelForCausalLM, PreTrainedModel

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigurationError(f"threads must be an integer >= 1 (or None: torch's choice), got {threads!r}")
    if isinstance(source, PreTrainedModel):
        if tokenizer is None:
            tokenizer = _local_tokenizer(source.name_or_path, require_tokenizer)
        return HFModel(source, tokenizer, threads=threads, lean=lean and not attn_implementation)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigurationError(
            f"cannot load a model from {type(source).__name__}: give a path, a cached hub id or a transformers model"
        )
    path = Path(source).expanduser()
    kwargs: dict[str, Any] = {"dtype": dtype, **NO_REMOTE_CODE}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if path.is_dir():
        refuse_custom_code(path)
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs and not (path / "config.json").exists():
            copy = converted_gguf(path, ggufs[0])
            if isinstance(copy, InMemory):
                tokenizer = copy.tokenizer if tokenizer is None else tokenizer
                return HFModel(copy.model.to(dtype), tokenizer, name=path.name, threads=threads, lean=lean and not attn_implementation)
            path = copy
        else:
            check_model_directory(path, tokenizer=tokenizer is None and require_tokenizer)
        location = str(path)
        name = Path(source).name
        wants_tokenizer = tokenizer is None and (require_tokenizer or has_tokenizer(path))
    elif _looks_like_path(str(source)):
        raise ModelNotFoundError(f"model path {str(source)!r} does not exist")
    else:
        location = name = str(source)
        wants_tokenizer = tokenizer is None
    try:
        model = AutoModelForCausalLM.from_pretrained(location, use_safetensors=True, **kwargs)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot load model {str(source)!r}: not a local model directory, and not a hub id cached on this "
            f"machine (downloads are off here). Pass a directory holding the model's weights and tokenizer. ({error})"
        ) from None
    except _LOAD_ERRORS as error:
        raise ModelFileError(f"cannot load the model in {location} ({type(error).__name__}: {error}); {AGAIN}") from None
    if wants_tokenizer:
        tokenizer = _tokenizer(location)
    return HFModel(model, tokenizer, name=name, threads=threads, lean=lean and not attn_implementation)


def _tokenizer(location: str) -> Any:
    """The tokenizer beside a model; one that does not load is the model's fault, whatever the
    tokenizers library raises for it."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location, **NO_REMOTE_CODE)
    except Exception as error:  # the tokenizers library raises plain Exceptions for damaged files
        raise ModelFileError(f"cannot load the tokenizer of {location} ({type(error).__name__}: {error}); {AGAIN}") from None


def _local_tokenizer(name_or_path: str, required: bool) -> Any:
    """The tokenizer a transformers model's `name_or_path` names, when it loads without a download."""
    from transformers import AutoTokenizer

    try:
        if name_or_path:
            return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True, **NO_REMOTE_CODE)
    except (OSError, ValueError):
        pass
    if required:
        raise ConfigurationError(f"no tokenizer found locally for the model {name_or_path or '(unnamed)'!r}: pass tokenizer= as well")
    return None


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or os.sep in source and source.count("/") != 1
