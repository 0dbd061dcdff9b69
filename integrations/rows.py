"""One row of a `BatchModel` seen as a model of its own, so that `SequenceCache` keeps it.

A batch of sequences keeps one `SequenceCache` per row over a `ModelRow`: the cache decides what
each row still holds and what it must feed (the same code as for one sequence), and
`SequenceCache.sync_rows` then feeds all rows in one `forward_rows`. A row's length is only a
number (dropping entries is lazy: the row's next forward starts from it), and its counters count
the forwards and tokens of this row only, which is what its statistics report.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Hashable, Sequence

from specdec.errors import ConfigurationError

from .base import BatchModel, LanguageModel, ModelOutput, ReducibleModel, RowInput, TextCodec, check_keep

# cheaper views of a batched model (trimmed head, int8), made once and shared by its rows
_VIEWS: "weakref.WeakKeyDictionary[Any, dict[Hashable, BatchModel]]" = weakref.WeakKeyDictionary()


class ModelRow:
    """Row `row` of `batch` behind the single-sequence `TreeLanguageModel` protocol."""

    def __init__(self, batch: BatchModel, row: int) -> None:
        self.batch = batch
        self.row = row
        self.name: str = f"{batch.name}[row {row}]"
        self.vocab_size: int = batch.vocab_size
        self.eos_token_ids: frozenset[int] = batch.eos_token_ids
        self.max_length: int | None = batch.max_length
        self.codec: TextCodec | None = batch.codec
        self.forwards = 0
        self.tokens_processed = 0
        self.forward_seconds = 0.0
        self._length = 0

    @property
    def cached_length(self) -> int:
        return self._length

    def input(self, tokens: Sequence[int], parents: Sequence[int] | None, keep: int, hidden: bool = False) -> RowInput:
        """This row's part of a batched forward appending `tokens` (a tree with `parents`)."""
        check_keep(tokens, keep)
        return RowInput(self.row, self._length, tuple(tokens), None if parents is None else tuple(parents), keep, hidden)

    def advance(self, fed: int, seconds: float) -> None:
        """A batched forward fed `fed` tokens to this row, in a forward of `seconds`."""
        self._length += fed
        self.forwards += 1
        self.tokens_processed += fed
        self.forward_seconds += seconds

    def forward(self, tokens: Sequence[int], *, keep: int = 1, hidden: bool = False, features: Sequence[int] = ()) -> ModelOutput:
        return self._alone(self.input(tokens, None, keep, hidden), features)

    def forward_tree(
        self, tokens: Sequence[int], parents: Sequence[int], *, keep: int = 1, hidden: bool = False, features: Sequence[int] = ()
    ) -> ModelOutput:
        return self._alone(self.input(tokens, parents, keep, hidden), features)

    def _alone(self, request: RowInput, features: Sequence[int]) -> ModelOutput:
        seconds = self.batch.forward_seconds
        out = self.batch.forward_rows([request], features=features)[0]
        self.advance(len(request.tokens), self.batch.forward_seconds - seconds)
        return out

    def compact(self, length: int, positions: Sequence[int]) -> None:
        self.batch.keep_row(self.row, length, positions)
        self._length = length + len(positions)

    def crop(self, length: int) -> None:
        if not 0 <= length <= self._length:
            raise ValueError(f"cannot crop a row of {self._length} tokens to {length}")
        self._length = length

    def reset(self) -> None:
        self._length = 0

    def with_head_subset(self, token_ids: Sequence[int]) -> "ModelRow":
        """This row of the batch's head-subset view (`ReducibleModel`), one view for all rows."""
        ids = tuple(sorted({int(t) for t in token_ids}))
        return ModelRow(self._view(("head", ids), lambda batch: batch.with_head_subset(ids)), self.row)

    def quantized(self) -> "ModelRow":
        """This row of the batch's int8 copy (`ReducibleModel`), one copy for all rows."""
        return ModelRow(self._view(("int8",), lambda batch: batch.quantized()), self.row)

    def _view(self, key: Hashable, make: Callable[[Any], LanguageModel]) -> BatchModel:
        if not isinstance(self.batch, ReducibleModel):
            raise ConfigurationError(f"{self.batch.name!r} offers no cheaper copies (trimmed head, int8): it is not a transformers model")
        views = _VIEWS.setdefault(self.batch, {})
        if key not in views:
            view = make(self.batch)
            if not isinstance(view, BatchModel):
                raise ConfigurationError(f"{view.name!r} holds one sequence: its rows cannot draft together")
            views[key] = view
        return views[key]


def whole_model(model: Any) -> Any:
    """The model a row belongs to (a draft is the same draft in every row); any other model as is."""
    return model.batch if isinstance(model, ModelRow) else model
