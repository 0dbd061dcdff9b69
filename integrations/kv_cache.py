"""A transformers KV cache that appends in place instead of re-concatenating.

transformers' `DynamicLayer.update` concatenates the new keys and values onto the old ones, which
copies the whole cache at every forward: per-step work that grows with the prompt. `GrowingLayer`
keeps a buffer with spare capacity (doubling when full), writes new entries into it and hands
attention a view of the filled part. Cropping a rejected draft only moves the length back; keeping
a token tree's accepted path moves just those entries.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_CAPACITY = 256


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in a preallocated buffer; `keys`/`values` are views of it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self._key_buffer = self._value_buffer = None
        self._length = 0
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, new = self._length, key_states.shape[-2]
        self._reserve(start + new, key_states, value_states)
        self._key_buffer[..., start : start + new, :].copy_(key_states)
        self._value_buffer[..., start : start + new, :].copy_(value_states)
        self._set_length(start + new)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of tokens to remove, got {tokens_to_remove}")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self._set_length(max(self._length + tokens_to_remove, 0))

    def keep(self, length: int, positions: Sequence[int]) -> None:
        """Keep entries [0, length) followed by those at `positions` (all >= length)."""
        if not self.is_initialized or self._key_buffer is None:
            return
        if positions:
            index = torch.tensor(list(positions), dtype=torch.long, device=self._key_buffer.device)
            end = length + len(positions)
            with torch.inference_mode():  # the buffers were made by forwards in inference mode
                self._key_buffer[..., length:end, :] = self._key_buffer.index_select(-2, index)
                self._value_buffer[..., length:end, :] = self._value_buffer.index_select(-2, index)
        self._set_length(length + len(positions))

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        self._length = 0
        super().reset()

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("specdec decodes one sequence per cache")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("specdec decodes one sequence per cache")

    def _reserve(self, needed: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        capacity = 0 if self._key_buffer is None else self._key_buffer.shape[-2]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, MIN_CAPACITY)
        keys = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
        values = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
        if self._length:
            keys[..., : self._length, :] = self._key_buffer[..., : self._length, :]
            values[..., : self._length, :] = self._value_buffer[..., : self._length, :]
        self._key_buffer, self._value_buffer = keys, values

    def _set_length(self, length: int) -> None:
        self._length = length
        if self._key_buffer is None:
            return
        self.keys = self._key_buffer[..., :length, :]
        self.values = self._value_buffer[..., :length, :]


def growing_cache(config: Any) -> DynamicCache:
    """A `DynamicCache` for `config` whose full-attention layers append in place."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def keep_entries(cache: DynamicCache, length: int, positions: Sequence[int]) -> None:
    """Keep entries [0, length) then `positions` in every layer (in place where the layer allows)."""
    index = None
    for layer in cache.layers:
        if isinstance(layer, GrowingLayer):
            layer.keep(length, positions)
        elif getattr(layer, "keys", None) is not None and layer.keys.numel():
            if index is None:
                index = torch.tensor(list(range(length)) + [int(p) for p in positions], dtype=torch.long, device=layer.keys.device)
            layer.keys = layer.keys.index_select(-2, index)
            layer.values = layer.values.index_select(-2, index)
