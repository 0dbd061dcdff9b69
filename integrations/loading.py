"""Loading a model by path or hub id into an `HFModel` (`load_model`).

What a transformers user holds is accepted as it is: a path (str or `pathlib.Path`), a hub id
already cached here, or a loaded `PreTrainedModel` (its tokenizer is then the one passed, else
the one its `name_or_path` names, if that loads without a download). A directory holding only a
`.gguf` file is read through transformers' GGUF reader (which dequantises to float32,
slowly) once, and a safetensors copy is cached under `SPECDEC_CACHE` so later loads are fast
(`gguf_cache`). `device` and `dtype` place the weights (`placement`: cpu in float32 or bfloat16,
cuda in float32, bfloat16 or float16); a `ModelSource` carries a path with those options wherever
a model is accepted (`Decoder(target=...)`, `draft=`, a proposer's `model`), since those load
what they are given through `load_model`. A directory's files are checked first (`model_files`), so that a damaged model
is one error naming the file instead of a reader's traceback. Kept apart from `hf.py`, which
holds the loaded model and its forward.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import torch

from specdec.errors import ConfigurationError, ModelFileError, ModelNotFoundError

from .gguf_cache import InMemory, converted_gguf
from .hf import HFModel
from .model_files import AGAIN, check_model_directory, has_tokenizer
from .placement import as_device, as_dtype, dtype_name, model_device, placement
from .remote_code import NO_REMOTE_CODE, refuse_custom_code

# what transformers raises on files it cannot make sense of (after `check_model_directory`)
_LOAD_ERRORS = (ValueError, KeyError, IndexError, TypeError, RuntimeError)


@attrs.frozen
class ModelSource:
    """A model to load, with how to load it: `Decoder(ModelSource(path, device="cuda",
    dtype="bfloat16"), draft=ModelSource(draft_path, device="cuda", dtype="bfloat16"))`.

    Accepted wherever a path is (it goes to `load_model` with these options). The target and a
    draft run on one device: give both the same `device`.
    """

    path: str | os.PathLike = attrs.field(validator=attrs.validators.instance_of((str, os.PathLike)))
    device: str | torch.device | None = None
    dtype: str | torch.dtype | None = None
    threads: int | None = None
    lean: bool = True

    def __attrs_post_init__(self) -> None:
        placement(self.device, self.dtype)  # a bad device or dtype is refused when it is written


def load_model(
    source: Any,
    *,
    tokenizer: Any = None,
    require_tokenizer: bool = True,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    threads: int | None = None,
    attn_implementation: str | None = None,
    lean: bool = True,
) -> HFModel:
    """Load a local directory (safetensors or GGUF) or a locally cached hub id.

    `device` (`"cpu"`, the default, `"cuda"`, `"cuda:N"`) and `dtype` (float32, the default,
    bfloat16, float16 on CUDA; a `torch.dtype` or its name) place the weights; every tensor of
    the forward, its KV cache and its logits then live on that device. `source` may also be a
    `ModelSource` (a path with these options) or a loaded transformers `PreTrainedModel`, which
    runs where it is, in its own dtype; a `tokenizer` given is used instead of the one found
    beside the model. A transformers model whose tokenizer cannot be found is an error unless
    `require_tokenizer=False` (a draft needs none: the model then decodes token ids only).
    `lean=False` keeps transformers' own forward for llama models too (see `decoder_stack`), as
    does asking for a transformers attention implementation.
    """
    from transformers import AutoModelForCausalLM, PreTrainedModel

    if isinstance(source, ModelSource):
        if (device, dtype, threads) != (None, None, None) or not lean:
            raise ConfigurationError("a ModelSource carries its own device, dtype, threads and lean: give them there")
        device, dtype, threads, lean, source = source.device, source.dtype, source.threads, source.lean, source.path
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigurationError(f"threads must be an integer >= 1 (or None: torch's choice), got {threads!r}")
    if isinstance(source, PreTrainedModel):
        _check_in_place(source, device, dtype)
        if tokenizer is None:
            tokenizer = _local_tokenizer(source.name_or_path, require_tokenizer)
        return HFModel(source, tokenizer, threads=threads, lean=lean and not attn_implementation)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigurationError(
            f"cannot load a model from {type(source).__name__}: give a path, a cached hub id, a ModelSource or a transformers model"
        )
    device, dtype = placement(device, dtype)
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
                model = copy.model.to(device=device, dtype=dtype)
                return HFModel(model, tokenizer, name=path.name, threads=threads, lean=lean and not attn_implementation)
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
    model = model.to(device)
    return HFModel(model, tokenizer, name=name, threads=threads, lean=lean and not attn_implementation)


def _check_in_place(model: Any, device: Any, dtype: Any) -> None:
    """A loaded transformers model runs where it is: a `device` or `dtype` asked for must be its own."""
    own_device, own_dtype = model_device(model), next(model.parameters()).dtype
    wrong = []
    if device is not None:
        asked = as_device(device)
        if asked.type != own_device.type or asked.index not in (None, own_device.index):
            wrong.append(f"device {asked} (it is on {own_device})")
    if dtype is not None and as_dtype(dtype) != own_dtype:
        wrong.append(f"dtype {dtype_name(as_dtype(dtype))} (it is in {dtype_name(own_dtype)})")
    if wrong:
        raise ConfigurationError(
            f"a loaded transformers model runs where it is, in its own dtype; asked for {' and '.join(wrong)}: "
            "move it with model.to(...) first, or pass its path"
        )


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
