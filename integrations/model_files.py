"""Checks of a model directory's files before transformers reads them.

transformers reports a damaged or incomplete model with whatever its readers raise (a JSON error,
a safetensors header error, a struct error from the GGUF reader), deep in a traceback. These
checks read only what is cheap (the config, each safetensors header and the file sizes, a GGUF
file's magic bytes) and say in one line which file is wrong and what to do. Pickled weights are
refused: reading a pickle can run code.
"""

from __future__ import annotations

import json
from pathlib import Path

from specdec.errors import ModelFileError

CONFIG = "config.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt", "tekken.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
GGUF_MAGIC = b"GGUF"
MAX_HEADER = 100 << 20  # a safetensors header larger than this is damaged, not big
AGAIN = "copy or download the model again"
# how to turn a transformers model's pickle weights into safetensors (the default advice)
TRANSFORMERS_CONVERSION = (
    "load the model with transformers' from_pretrained and save_pretrained it, which writes model.safetensors"
)


def check_model_directory(path: Path, *, tokenizer: bool) -> None:
    """Raise `ModelFileError` if `path` lacks a readable config, whole safetensors weights or
    (when `tokenizer`) tokenizer files."""
    config = path / CONFIG
    if not config.is_file():
        raise ModelFileError(
            f"{path} holds no model: no {CONFIG} and no .gguf file; pass a directory with {CONFIG}, "
            "model.safetensors and the tokenizer files"
        )
    check_config(config)
    for weights in weight_files(path):
        problem = safetensors_problem(weights)
        if problem:
            raise ModelFileError(f"{problem}: the model in {path} is damaged; {AGAIN}")
    if tokenizer and not has_tokenizer(path):
        raise ModelFileError(
            f"{path} has no tokenizer ({' or '.join(TOKENIZER_FILES[:2])}); copy the tokenizer files of the model "
            "it was made from into it, or pass a tokenizer"
        )


def check_config(config: Path) -> None:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"cannot read {config} ({error}); {AGAIN}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ModelFileError(f"{config} names no model_type, so it is not a transformers model config; {AGAIN}")


def weight_files(path: Path, convert: str = TRANSFORMERS_CONVERSION) -> list[Path]:
    """The safetensors files holding the model's weights (an error if there are none; `convert`
    says how to turn pickle weights into safetensors)."""
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelFileError(f"cannot read {index} ({error!r}); {AGAIN}") from None
        missing = [name for name in shards if not (path / name).is_file()]
        if missing:
            raise ModelFileError(f"{path} lacks the weight files {', '.join(missing[:3])} that {SAFETENSORS_INDEX} names; {AGAIN}")
        return [path / name for name in shards]
    single = sorted(path.glob("*.safetensors"))
    if single:
        return [path / "model.safetensors"] if (path / "model.safetensors").is_file() else single
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelFileError(
            f"{path} holds PyTorch pickle weights ({', '.join(pickles[:3])}), which specdec does not read (loading a "
            f"pickle can run code); convert them once, where you trust the file: {convert}"
        )
    raise ModelFileError(f"{path} holds no weights (model.safetensors); {AGAIN}")


def safetensors_problem(file: Path) -> str | None:
    """What is wrong with a safetensors file, judged by its header and size (None: nothing)."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < length <= min(size - 8, MAX_HEADER):
                return f"{file} is not a safetensors file or is truncated ({size} bytes, no whole header)"
            header = json.loads(handle.read(length))
        ends = [int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        return f"{file} has a damaged header ({error})"
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return f"{file} is {'truncated' if size < expected else 'longer than its header says'} ({size} bytes of {expected})"
    return None


def has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def check_gguf(file: Path) -> None:
    """Raise `ModelFileError` unless `file` starts like a GGUF file (its tensors are checked when read)."""
    try:
        with open(file, "rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise ModelFileError(f"cannot read {file} ({error.strerror or error})") from None
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{file} is not a GGUF file (it does not start with {GGUF_MAGIC!r}); {AGAIN}")
