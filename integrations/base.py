"""The narrow seam between specdec and a model backend.

A backend holds one sequence's KV cache. specdec only ever asks it to extend that sequence by some
tokens (returning logits, and hidden states on request), to crop it back to a length, and for a
few facts (vocabulary size, end-of-sequence ids, context length). Everything else about a backend
stays behind this line. A `BatchModel` holds several sequences, one per row, and feeds them in one
forward (a batch of prompts).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import attrs
import torch

from specdec.errors import ConfigurationError


@attrs.frozen
class ModelOutput:
    """Logits (and optionally final hidden states) for the last `keep` positions fed; with
    `forward(..., features=layers)` (`FeatureModel`), those layers' hidden states at every position fed."""

    logits: torch.Tensor  # [keep, vocab]
    hidden: torch.Tensor | None = None  # [keep, hidden_size]
    features: tuple[torch.Tensor, ...] = attrs.field(default=(), eq=False, repr=False)  # [fed, hidden_size] per layer


@runtime_checkable
class TextCodec(Protocol):
    """The two tokenizer operations specdec needs."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


Messages = Sequence[Mapping[str, Any]]  # a chat: [{"role": "user", "content": "..."}, ...]


@runtime_checkable
class ChatCodec(TextCodec, Protocol):
    """Optional: a tokenizer that wraps a chat in its model's chat template (a string is one user
    message), ending with the prompt of the assistant's turn."""

    def apply_chat_template(self, prompt: "str | Messages") -> list[int]: ...


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


@runtime_checkable
class TreeLanguageModel(LanguageModel, Protocol):
    """Optional: a backend that can feed a token tree in one forward (tree attention).

    Each fed token attends to the cached sequence and to its own ancestors in the tree only, and
    sits at the position its depth gives; the target then checks several candidate branches in
    the pass that verifies the draft. `compact` afterwards keeps one root-to-node path.
    """

    def forward_tree(self, tokens: Sequence[int], parents: Sequence[int], *, keep: int = 1, hidden: bool = False) -> ModelOutput:
        """Append a tree: `parents[i]` is the index in `tokens` of token i's parent (< i), or -1
        for the last cached token. Returns outputs for the last `keep` tokens, in feed order."""
        ...

    def compact(self, length: int, positions: Sequence[int]) -> None:
        """Keep the first `length` cached entries followed by those at `positions` (a tree path,
        in order); drop everything else."""
        ...


@runtime_checkable
class ReducibleModel(LanguageModel, Protocol):
    """Optional: a model that offers cheaper copies of itself for drafting (same tokens, exact
    verification either way; their proposals change a little)."""

    def with_head_subset(self, token_ids: Sequence[int]) -> "LanguageModel":
        """A view scoring only `token_ids` in the LM head (the others get -inf)."""
        ...

    def quantized(self) -> "LanguageModel":
        """A copy whose linear layers run in int8."""
        ...


@runtime_checkable
class ForkableModel(LanguageModel, Protocol):
    """Optional: a model that hands out more handles on its weights, each with its own empty
    cache, so that several sequences can draft with one loaded model (a vLLM batch)."""

    def sibling(self) -> "LanguageModel":
        """Another handle on the same weights (and head) with an empty cache."""
        ...


@runtime_checkable
class FeatureModel(LanguageModel, Protocol):
    """Optional: a backend that also returns hidden states of chosen layers, and lends its token
    embedding and LM head: what a proposer drafting from the target's own features needs
    (EAGLE-style heads, arXiv 2401.15077, 2503.01840).

    `forward(tokens, ..., features=layers)` and `forward_tree(..., features=layers)` then fill
    `ModelOutput.features` with one [fed tokens, hidden_size] tensor per layer, in the order asked,
    for every token fed (not only the kept ones). Layer L is the residual stream after L decoder
    layers (transformers' `hidden_states[L]`); L = `num_layers` is the final normed output.
    """

    num_layers: int  # decoder layers
    hidden_size: int

    def input_embedding(self) -> torch.Tensor:
        """The token embedding matrix [vocab_size, hidden_size]."""
        ...

    def output_embedding(self) -> torch.Tensor:
        """The LM head's weight [vocab_size, hidden_size]."""
        ...


@attrs.frozen
class RowInput:
    """One row's part of a batched forward (`BatchModel.forward_rows`).

    The row (its slot) keeps its first `start` cached entries (the rest are dropped, as `crop`
    would) and appends `tokens`; `parents` (as in `forward_tree`, -1 for the last kept entry)
    makes them a token tree, None a chain. Outputs are those of the last `keep` tokens.
    """

    row: int
    start: int
    tokens: tuple[int, ...]
    parents: tuple[int, ...] | None = None
    keep: int = 1
    hidden: bool = False


@runtime_checkable
class BatchModel(TreeLanguageModel, Protocol):
    """Optional: a target that holds several sequences (rows, addressed by slot) and feeds them in
    one forward, each with its own cached length, chain or tree. specdec's batches verify every
    active row's draft in one such forward; a row's outputs must not depend on its neighbours'.
    """

    def forward_rows(self, inputs: Sequence[RowInput], *, features: Sequence[int] = ()) -> list[ModelOutput]:
        """One forward over `inputs` (each row at most once); one output per input, in order."""
        ...

    def keep_row(self, row: int, length: int, positions: Sequence[int]) -> None:
        """`compact` for one row: keep its first `length` entries followed by those at `positions`."""
        ...


def supports_tree(model: object) -> bool:
    """Whether `model` can verify token trees (see `TreeLanguageModel`)."""
    return isinstance(model, TreeLanguageModel)


@runtime_checkable
class GenerationDefaults(Protocol):
    """Optional: a model that carries transformers' generation defaults (its `generation_config`),
    which `generate(generation_config=..., do_sample=...)` applies as transformers would."""

    generation_config: Any


def as_model(value: Any, tokenizer: Any = None, *, require_tokenizer: bool = False) -> "LanguageModel":
    """attrs converter shared by the decoder and model proposers: a path (str or `os.PathLike`), a
    cached hub id or a transformers model is loaded (see `load_model`); a `LanguageModel` is kept."""
    if not isinstance(value, LanguageModel):  # a path, a hub id or a transformers model
        from .loading import load_model

        return load_model(value, tokenizer=tokenizer, require_tokenizer=require_tokenizer)
    if tokenizer is not None:
        raise ConfigurationError("tokenizer= applies to a model given as a path or a transformers model; pass codec= with a loaded model")
    return value


def check_features(features: Sequence[int], num_layers: int) -> None:
    """Shared argument check of `FeatureModel` forwards: layers 0..num_layers."""
    if any(isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= num_layers for layer in features):
        raise ValueError(f"feature layers must be integers in 0..{num_layers}, got {list(features)}")


def check_keep(tokens: Sequence[Any], keep: int) -> None:
    """Shared argument check of `forward` implementations."""
    if not tokens:
        raise ValueError("forward() needs at least one token")
    if not 1 <= keep <= len(tokens):
        raise ValueError(f"keep must be in 1..{len(tokens)}, got {keep}")
