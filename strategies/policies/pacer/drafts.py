"""Matching a pre-verifier to a draft model: its fingerprint, hidden size and embedding matrix.

A checkpoint records the fingerprint of the draft it was trained for (`PacerConfig`), and the
policy refuses a draft with another one; training reads the draft's embedding for the optional
token codes. These read a draft model, not the network, hence their own module.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from specdec.integrations.rows import whole_model

_ARCH_KEYS = (
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "tie_word_embeddings",
)


def draft_fingerprint(model: Any) -> str:
    """A short hash of what makes a draft's hidden states what they are.

    For transformers models: the architecture part of the config, the embedding's shape and its
    first rows (so that a retrained draft of the same shape is told apart; dtype-independent as
    long as the values are, e.g. bf16 weights loaded as float32). Other backends: name, vocabulary
    and hidden sizes.
    """
    model = whole_model(model)
    inner = getattr(model, "model", None)
    config = getattr(inner, "config", None)
    digest = hashlib.sha256()
    if config is not None and hasattr(inner, "get_input_embeddings"):
        arch = {key: getattr(config, key, None) for key in _ARCH_KEYS}
        weight = inner.get_input_embeddings().weight.detach()
        digest.update(json.dumps(arch, sort_keys=True).encode())
        digest.update(str(tuple(weight.shape)).encode())
        rows = weight[: min(8, weight.shape[0])].float()
        digest.update(rows.mul(1024).round().to(torch.int64).numpy().tobytes())
    else:
        facts = {"name": getattr(model, "name", ""), "vocab": getattr(model, "vocab_size", None),
                 "hidden": getattr(model, "hidden_size", None)}
        digest.update(json.dumps(facts, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def draft_hidden_size(model: Any) -> int | None:
    size = getattr(whole_model(model), "hidden_size", None)
    return int(size) if size is not None else None


def draft_embedding(model: Any) -> torch.Tensor | None:
    """The draft's input embedding matrix, when the backend exposes one (transformers)."""
    inner = getattr(whole_model(model), "model", None)
    if inner is None or not hasattr(inner, "get_input_embeddings"):
        return None
    return inner.get_input_embeddings().weight.detach()
