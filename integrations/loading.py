"""Loading a model by path or hub id into an `HFModel` (`load_model`).

What a transformers user holds is accepted as it is: a path (str or `pathlib.Path`), a hub id
already cached here, or a loaded `PreTrainedModel` (its tokenizer is then the one passed, else
the one its `name_or_path` names, if that loads without a download). A directory holding only a
`.gguf` file is read through transformers' GGUF reader (which dequantises to float32,
slowly) once, and a safetensors copy is cached under `SPECDEC_CACHE` so later loads are fast.
Kept apart from `hf.py`, which holds the loaded model and its forward.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from specdec.defaults import cache_root
from specdec.errors import ConfigurationError, ModelNotFoundError

from .hf import HFModel


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
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

    if isinstance(source, PreTrainedModel):
        if tokenizer is None:
            tokenizer = _local_tokenizer(source.name_or_path, require_tokenizer)
        return HFModel(source, tokenizer, threads=threads, lean=lean and not attn_implementation)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigurationError(
            f"cannot load a model from {type(source).__name__}: give a path, a cached hub id or a transformers model"
        )
    path = Path(source).expanduser()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs and not (path / "config.json").exists():
            path = _converted_gguf(path, ggufs[0])
        location = str(path)
        name = Path(source).name
    elif _looks_like_path(str(source)):
        raise ModelNotFoundError(f"model path {str(source)!r} does not exist")
    else:
        location = name = str(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(location)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot load model {str(source)!r}: not a local model directory, and not a hub id cached on this "
            f"machine (downloads are off here). Pass a directory holding the model's weights and tokenizer. ({error})"
        ) from None
    return HFModel(model, tokenizer, name=name, threads=threads, lean=lean and not attn_implementation)


def _local_tokenizer(name_or_path: str, required: bool) -> Any:
    """The tokenizer a transformers model's `name_or_path` names, when it loads without a download."""
    from transformers import AutoTokenizer

    try:
        if name_or_path:
            return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError):
        pass
    if required:
        raise ConfigurationError(f"no tokenizer found locally for the model {name_or_path or '(unnamed)'!r}: pass tokenizer= as well")
    return None


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or os.sep in source and source.count("/") != 1


def _converted_gguf(directory: Path, gguf: Path) -> Path:
    """A safetensors copy of a GGUF model (made once: dequantising the GGUF is slow, so its
    progress is reported on stderr)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from specdec.progress import reporting

    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "converted" / f"{directory.name}-{key}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    what = f"converting {gguf.name} to safetensors in {target} (once per model file)"
    with reporting(what, done=f"converted {gguf.name}", total=4) as progress:  # the four steps below
        loaded = AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), gguf_file=gguf.name)
        progress.advance()
        rebuilt = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
        rebuilt.load_state_dict(loaded.state_dict())
        rebuilt.generation_config = loaded.generation_config
        progress.advance()
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        rebuilt.save_pretrained(tmp)
        progress.advance()
        tokenizer.save_pretrained(tmp)
        tmp.replace(target) if not target.exists() else None
        progress.advance()
    return target
