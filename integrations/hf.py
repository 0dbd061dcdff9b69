"""Hugging Face transformers backend: the decoder stacks and `HFModel` (the tokenizer codec is `codec.py`).

Loading by path or hub id (GGUF included) is `integrations/loading.py`. transformers' KV cache is a
`DynamicCache` whose layers append in place (`kv_cache.GrowingLayer`), kept across calls and
cropped by moving its length, so the prefix is never re-encoded or copied."""

from __future__ import annotations

import copy
import math
import time
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import torch

from specdec.errors import ConfigurationError

from .base import ModelOutput, RowInput, check_features, check_keep
from .codec import HFCodec
from .placement import model_device
from .projection import projection
from .tree_attention import full_mask, leading_chain, tree_mask

if TYPE_CHECKING:
    from .lean_llama import LeanLlama, RowFeed


class TransformersStack:
    """transformers' own decoder stack and cache: runs any architecture `LeanLlama` does not."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.base = getattr(model, model.base_model_prefix)
        self.device = model_device(model)
        self.cache = self._new_cache()

    def _new_cache(self):
        from .kv_cache import growing_cache

        return growing_cache(self.model.config)

    def sibling(self) -> "TransformersStack":
        return TransformersStack(self.model)

    def reset(self) -> None:
        self.cache = self._new_cache()

    def crop(self, length: int) -> None:
        self.cache.crop(length - self.cache.get_seq_length())  # a negative count drops tokens from the end

    def keep(self, length: int, positions: Sequence[int]) -> None:
        from .kv_cache import keep_entries

        keep_entries(self.cache, length, positions)

    def run(
        self,
        tokens: Sequence[int],
        start: int,
        keep: int,
        positions: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
        causal_rows: int = 0,
        features: Sequence[int] = (),
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Same contract as `LeanLlama.run`: the final normed hidden states of the last `keep` tokens
        and those of the `features` layers at every token fed."""
        extra: dict[str, torch.Tensor] = {}
        if allowed is not None:
            allowed = full_mask(allowed, causal_rows, start)
            # transformers 5.x passes a 4D additive mask through unchanged (masking_utils)
            dtype = self.model.dtype
            extra["attention_mask"] = torch.zeros(1, 1, *allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
                ~allowed, torch.finfo(dtype).min
            )
        if positions is not None:
            extra["position_ids"] = positions.unsqueeze(0)
        input_ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        out = self.base(input_ids=input_ids, past_key_values=self.cache, use_cache=True, output_hidden_states=bool(features), **extra)
        return out.last_hidden_state[0, -keep:], tuple(out.hidden_states[layer][0] for layer in features)


def decoder_stack(model: Any, lean: bool = True) -> "LeanLlama | TransformersStack":
    """The fastest exact forward for `model`: `LeanLlama` where it applies, else transformers'."""
    from .lean_llama import LeanLlama, unsupported_reason

    if lean and unsupported_reason(model) is None:
        return LeanLlama(model)
    return TransformersStack(model)


class HFModel:
    """A transformers causal LM with one cached sequence, behind `LanguageModel`.

    The forward runs through `decoder_stack` (the lean llama forward where it applies, pass
    `lean=False` for transformers' own), then the LM head over the kept positions only.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        name: str | None = None,
        threads: int | None = None,
        lean: bool = True,
        stack: Any = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.device = model_device(model)  # every tensor of a forward, and its logits, live here
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.vocab_size = int(_head_weight(model).shape[0])
        self.hidden_size = int(model.config.hidden_size)
        self.num_layers = int(model.config.num_hidden_layers)  # FeatureModel
        self.max_length = getattr(model.config, "max_position_embeddings", None)
        self.codec = HFCodec(tokenizer) if tokenizer is not None else None
        self.eos_token_ids = frozenset(_eos_ids(model, tokenizer))
        self.generation_config = getattr(model, "generation_config", None)  # transformers' defaults (GenerationDefaults)
        self.forwards = 0
        self.tokens_processed = 0
        self.forward_seconds = 0.0
        self.lean = lean
        self._stack = stack  # built on first use (see `stack`)
        self._length = 0
        self._head_ids: torch.Tensor | None = None  # see with_head_subset
        self._head: Any = None
        self._row_stacks: dict[int, TransformersStack] = {}  # rows of `forward_rows` on transformers' stack

    @property
    def stack(self) -> Any:
        """The decoder stack this model runs (built on first use: loading stays cheap)."""
        if self._stack is None:
            self._stack = decoder_stack(self.model, self.lean)
        return self._stack

    @property
    def head(self) -> Any:
        if self._head is None:
            self._head = projection(self.model.get_output_embeddings())
        return self._head

    def _view(self, model: Any, name: str, stack: Any = None) -> "HFModel":
        return HFModel(model, self.codec.tokenizer if self.codec else None, name=name, lean=self.lean, stack=stack)

    def sibling(self) -> "HFModel":
        """Another handle on this model's weights (and trimmed head) with its own empty cache: one
        per sequence when several sequences draft with one model at once (a vLLM batch)."""
        view = self._view(self.model, self.name, self.stack.sibling())
        view._head_ids, view._head = self._head_ids, self._head
        return view

    def with_head_subset(self, token_ids: Sequence[int]) -> "HFModel":
        """A view of this model whose LM head scores only `token_ids` (others get -inf logits).

        A draft's LM head over a 49k vocabulary is most of its cost; scoring only the most frequent
        tokens (as FR-Spec does) makes every draft step cheaper and keeps decoding exact: the
        draft then proposes from that subset, and q is 0 elsewhere, which the verifier handles.
        The view shares the weights but has its own cache.
        """
        ids = torch.tensor(sorted(set(int(t) for t in token_ids)), dtype=torch.long, device=self.device)
        if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size:
            raise ValueError(f"head subset must be non-empty token ids below {self.vocab_size}")
        view = self._view(self.model, f"{self.name}[head {len(ids)}]", self.stack.sibling())
        view._head_ids = ids
        view._head = projection(_subset_linear(self.model, ids))
        return view

    def quantized(self) -> "HFModel":
        """A copy whose linear layers run in int8 (PyTorch dynamic quantization), for drafts only.

        A small draft's forward on a CPU is bound by reading its weights, so int8 weights make each
        step cheaper. Its logits move slightly, which changes what the draft proposes but never
        what is emitted: the verifier alone decides, on the target's exact logits. Do not quantize
        a target: that changes the model being decoded. PyTorch's dynamic quantization runs on
        a CPU only.
        """
        if self.device.type != "cpu":
            raise ConfigurationError(f"an int8 draft runs on the CPU only; {self.name} is on {self.device}")
        with warnings.catch_warnings():  # torch.ao's dynamic quantization is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(copy.deepcopy(self.model), {torch.nn.Linear}, dtype=torch.qint8)
            view = self._view(model, f"{self.name}[int8]")
            if self._head_ids is not None:
                view._head_ids = self._head_ids
                head = quantize_dynamic(torch.nn.Sequential(_subset_linear(self.model, self._head_ids)), {torch.nn.Linear}, dtype=torch.qint8)
                view._head = projection(head[0])
        return view

    @property
    def cached_length(self) -> int:
        return self._length

    def forward(self, tokens: Sequence[int], *, keep: int = 1, hidden: bool = False, features: Sequence[int] = ()) -> ModelOutput:
        check_keep(tokens, keep)
        if self.max_length is not None and self._length + len(tokens) > self.max_length:
            raise ValueError(f"{self.name}: {self._length + len(tokens)} tokens exceed the context of {self.max_length}")
        return self._run(tokens, keep, hidden, features)

    def input_embedding(self) -> torch.Tensor:
        """The token embedding matrix (`FeatureModel`)."""
        return self.model.get_input_embeddings().weight.detach()

    def output_embedding(self) -> torch.Tensor:
        """The LM head's weight, all rows (`FeatureModel`)."""
        return _head_weight(self.model)

    def crop(self, length: int) -> None:
        if not 0 <= length <= self._length:
            raise ValueError(f"cannot crop a cache of {self._length} tokens to {length}")
        if length == 0:
            self.reset()
        elif length < self._length:
            self.stack.crop(length)
            self._length = length

    def reset(self) -> None:
        if self._stack is not None:
            self._stack.reset()
        self._row_stacks.clear()
        self._length = 0

    def forward_tree(
        self, tokens: Sequence[int], parents: Sequence[int], *, keep: int = 1, hidden: bool = False, features: Sequence[int] = ()
    ) -> ModelOutput:
        """Append a token tree in one forward (see `TreeLanguageModel`).

        Each token gets an attention row that admits the whole cache and its own ancestors, and
        an explicit position (its depth): a branch restarts where its parent ends. The cache
        holds all tree tokens afterwards; `compact` keeps one path.
        """
        check_keep(tokens, keep)
        n = len(tokens)
        if len(parents) != n or any(not -1 <= p < i for i, p in enumerate(parents)):
            raise ValueError("each parent must be -1 or the index of an earlier token")
        cached = self._length
        depth: list[int] = []
        for p in parents:
            depth.append(1 if p < 0 else depth[p] + 1)
        if self.max_length is not None and cached + max(depth) > self.max_length:
            raise ValueError(f"{self.name}: {cached + max(depth)} positions exceed the context of {self.max_length}")
        # on an empty cache the tree's leading chain (the prompt) attends causally: only the
        # nodes after it are masked (tree_attention)
        chain = leading_chain(parents) if cached == 0 else 0
        allowed = tree_mask(parents, cached, chain).to(self.device)
        positions = torch.tensor([cached + d - 1 for d in depth], dtype=torch.long, device=self.device)
        return self._run(tokens, keep, hidden, features, positions=positions, allowed=allowed, causal_rows=chain)

    def _run(self, tokens: Sequence[int], keep: int, hidden: bool, features: Sequence[int], **tree: Any) -> ModelOutput:
        """One forward appending `tokens` (plain, or a tree given by its positions and mask)."""
        check_features(features, self.num_layers)
        start = time.perf_counter()
        with torch.inference_mode():
            last, layers = self.stack.run(tokens, self._length, keep, features=features, **tree)
            logits = self._logits(last)
            states = last.float() if hidden else None
        self.forward_seconds += time.perf_counter() - start
        self._length += len(tokens)
        self.forwards += 1
        self.tokens_processed += len(tokens)
        return ModelOutput(logits=logits, hidden=states, features=layers)

    def _logits(self, last: torch.Tensor) -> torch.Tensor:
        """The LM head over final hidden states (a head-subset view scores only its tokens)."""
        scores = self.head(last).float()
        if self._head_ids is None:
            return scores
        logits = torch.full((last.shape[0], self.vocab_size), -math.inf, device=self.device)
        logits[:, self._head_ids] = scores
        return logits

    def forward_rows(self, inputs: Sequence[RowInput], *, features: Sequence[int] = ()) -> list[ModelOutput]:
        """Several sequences in one call (`BatchModel`).

        The lean llama forward feeds every row in one forward (`LeanLlama.run_rows`; its row 0 is
        the sequence `forward` extends). transformers' own forward, for other architectures, runs
        the rows one after another, each with a cache of its own: exact all the same, just not
        faster than decoding the rows one by one.
        """
        check_features(features, self.num_layers)
        if len({request.row for request in inputs}) != len(inputs):
            raise ValueError("each row can be fed once per forward")
        feeds = [self._row_feed(request) for request in inputs]
        start = time.perf_counter()
        with torch.inference_mode():
            if isinstance(self.stack, TransformersStack):
                ran = [self._row_stack(feed.row, feed.start).run(feed.tokens, feed.start, feed.keep, feed.positions, feed.allowed, features=features) for feed in feeds]
            else:
                ran = self.stack.run_rows(feeds, features)
            logits = self._logits(torch.cat([last for last, _ in ran])).split([feed.keep for feed in feeds])
            outs = [
                ModelOutput(logits=row_logits, hidden=last.float() if request.hidden else None, features=layers)
                for request, row_logits, (last, layers) in zip(inputs, logits, ran)
            ]
        self.forward_seconds += time.perf_counter() - start
        self.forwards += 1
        self.tokens_processed += sum(len(request.tokens) for request in inputs)
        if not isinstance(self.stack, TransformersStack) and any(request.row == 0 for request in inputs):
            self._length = 0  # the lean stack's row 0 is the single sequence's: it is read afresh
        return outs

    def _row_feed(self, request: RowInput) -> "RowFeed":
        """A row's feed for the stack: its positions and mask when it is a tree."""
        from .lean_llama import RowFeed

        check_keep(request.tokens, request.keep)
        if request.parents is None:
            depth = len(request.tokens)
            positions = allowed = None
        else:
            depths: list[int] = []
            for p in request.parents:
                depths.append(1 if p < 0 else depths[p] + 1)
            depth = max(depths)
            allowed = tree_mask(request.parents, request.start).to(self.device)
            positions = torch.tensor([request.start + d - 1 for d in depths], dtype=torch.long, device=self.device)
        if self.max_length is not None and request.start + depth > self.max_length:
            raise ValueError(f"{self.name}: {request.start + depth} positions exceed the context of {self.max_length}")
        return RowFeed(request.row, request.tokens, request.start, request.keep, positions, allowed)

    def _row_stack(self, row: int, start: int) -> "TransformersStack":
        """Row `row`'s own transformers stack and cache, cropped to `start` entries."""
        if row not in self._row_stacks:
            self._row_stacks[row] = self.stack.sibling()
        stack = self._row_stacks[row]
        if start == 0:
            stack.reset()
        elif start < stack.cache.get_seq_length():
            stack.crop(start)
        return stack

    def keep_row(self, row: int, length: int, positions: Sequence[int]) -> None:
        """`compact` for one row of `forward_rows`."""
        if isinstance(self.stack, TransformersStack):
            self._row_stacks[row].keep(length, positions)
        else:
            self.stack.keep(length, positions, row=row)

    def compact(self, length: int, positions: Sequence[int]) -> None:
        """Keep cache entries [0, length) and then those at `positions`, in that order.

        The keys were rotated for the positions they were fed at, which are exactly the positions
        of the kept path, so moving the entries is all it takes.
        """
        if not 0 <= length <= self._length or any(not length <= p < self._length for p in positions):
            raise ValueError(f"cannot keep {length} entries and positions {list(positions)} of a cache of {self._length}")
        self.stack.keep(length, positions)
        self._length = length + len(positions)

    def __repr__(self) -> str:
        return f"HFModel({self.name!r}, vocab_size={self.vocab_size})"


def _subset_linear(model: Any, ids: torch.Tensor) -> torch.nn.Linear:
    """A linear layer holding the LM head's rows for `ids` only."""
    weight = _head_weight(model)[ids].contiguous()
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    head.weight = torch.nn.Parameter(weight, requires_grad=False)
    return head


def _head_weight(model: Any) -> torch.Tensor:
    """The LM head's weight in float (an int8 head exposes it through a method)."""
    weight = model.get_output_embeddings().weight
    return (weight().dequantize() if callable(weight) else weight).detach()


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids
