"""The narrow seam between specdec and a model backend.

A backend holds one sequence's KV cache. specdec only ever asks it to extend that sequence by some
tokens (returning logits, and hidden states on request), to crop it back to a length, and for a
few facts (vocabulary size, end-of-sequence ids, context length). Everything else about a backend
stays behind this line.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import attrs
import torch


@attrs.frozen
class ModelOutput:
    """Logits (and optionally final hidden states) for the last `keep` positions fed."""

    logits: torch.Tensor  # [keep, vocab]
    hidden: torch.Tensor | None = None  # [keep, hidden_size]


@runtime_checkable
class TextCodec(Protocol):
    """The two tokenizer operations specdec needs."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@runtime_checkable
class LanguageModel(Protocol):
    """A causal LM with a KV cache for one sequence."""

    name: str
    vocab_size: int
    eos_token_ids: frozenset[int]
    max_length: int | None
    codec: TextCodec | None
    forwards: int  # number of forward calls so far (telemetry)
    tokens_processed: int  # tokens fed so far (telemetry)
    forward_seconds: float  # wall time spent inside forward calls (telemetry)

    @property
    def cached_length(self) -> int:
        """How many tokens the cache holds."""
        ...

    def forward(self, tokens: Sequence[int], *, keep: int = 1, hidden: bool = False) -> ModelOutput:
        """Append `tokens` to the cached sequence; return outputs for the last `keep` of them."""
        ...

    def crop(self, length: int) -> None:
        """Drop cached tokens beyond `length`, so the next `forward` continues from there."""
        ...

    def reset(self) -> None:
        """Forget the whole cached sequence."""
        ...


def check_keep(tokens: Sequence[Any], keep: int) -> None:
    """Shared argument check of `forward` implementations."""
    if not tokens:
        raise ValueError("forward() needs at least one token")
    if not 1 <= keep <= len(tokens):
        raise ValueError(f"keep must be in 1..{len(tokens)}, got {keep}")
