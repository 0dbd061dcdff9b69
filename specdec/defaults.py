"""Where the embedded default model pair and specdec's cache live, and the clear error when the
models are missing."""

from __future__ import annotations

import os
from pathlib import Path

from specdec.errors import ModelNotFoundError

DEFAULT_TARGET_DIR = "smollm2-135m-instruct"
DEFAULT_DRAFT_DIR = "smollm2-draft"


def models_dir() -> Path:
    """`SPECDEC_MODELS`, else the first `shared/models` found beside the working or source tree."""
    env = os.environ.get("SPECDEC_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    candidates = [Path.cwd() / ".." / "shared" / "models", Path.cwd() / "shared" / "models"]
    candidates += [parent / "shared" / "models" for parent in here.parents]
    for candidate in candidates:
        if (candidate / DEFAULT_TARGET_DIR).is_dir():
            return candidate.resolve()
    raise ModelNotFoundError(
        "cannot find the default models: set SPECDEC_MODELS to the directory holding "
        f"{DEFAULT_TARGET_DIR}/ and {DEFAULT_DRAFT_DIR}/, or pass --target/--draft"
    )


def cache_root() -> Path:
    """Where converted model copies and measured GEMM plans live (`SPECDEC_CACHE`, else ~/.cache/specdec)."""
    return Path(os.environ.get("SPECDEC_CACHE", Path.home() / ".cache" / "specdec"))


def default_target() -> str:
    return str(models_dir() / DEFAULT_TARGET_DIR)


def default_draft() -> str:
    return str(models_dir() / DEFAULT_DRAFT_DIR)


def is_default_draft(path: str | os.PathLike) -> bool:
    try:
        return Path(path).resolve() == (models_dir() / DEFAULT_DRAFT_DIR).resolve()
    except ModelNotFoundError:
        return False
