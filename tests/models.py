"""Real pretrained models from the models directory (`specdec.defaults.models_dir`), loaded once per test run."""

from __future__ import annotations

import functools
import os

import pytest

from specdec.defaults import models_dir


def model_path(name: str) -> str:
    try:
        path = models_dir() / name
    except Exception as error:  # pragma: no cover - the tests need the models directory
        pytest.fail(f"models not found: {error}")
    return str(path)


@functools.lru_cache(maxsize=None)
def real_model(name: str):
    """A fresh adapter per name (tests share it; every Decoder re-syncs its cache)."""
    from specdec.integrations.loading import load_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_model(model_path(name))
