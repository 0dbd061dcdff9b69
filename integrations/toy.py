"""A toy backend of exact probability tables: no network, no weights, a tiny vocabulary.

The next-token distribution depends on the last `order` tokens of the sequence (shorter prefixes
have their own rows). Because the tables are exact, the property tests can compute the target's
output distribution in closed form and compare it with what the decoder produces.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from .base import ModelOutput, RowInput, check_features, check_keep


class LetterCodec:
    """Token i is the letter chr(ord('a') + i); enough to give toy runs a text form."""

    def encode(self, text: str) -> list[int]:
        return [ord(ch) - ord("a") for ch in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(ord("a") + int(i)) for i in ids)


class ToyModel:
    """An exact n-gram table model behind the `LanguageModel` protocol."""

    def __init__(
        self,
        table: Mapping[tuple[int, ...], Sequence[float]],
        vocab_size: int,
        *,
        order: int = 1,
        eos_token_ids: frozenset[int] = frozenset(),
        max_length: int | None = None,
        name: str = "toy",
    ) -> None:
        if order < 1:
            raise ValueError("order must be >= 1")
        self._rows = {key: torch.tensor(list(row), dtype=torch.float64) for key, row in table.items()}
        for key, row in self._rows.items():
            if row.shape != (vocab_size,):
                raise ValueError(f"row {key} has shape {tuple(row.shape)}, expected ({vocab_size},)")
        self.order = order
        self.vocab_size = vocab_size
        self.eos_token_ids = frozenset(eos_token_ids)
        self.max_length = max_length
        self.name = name
        self.codec = LetterCodec()
        self.hidden_size = vocab_size
        self.num_layers = 1  # FeatureModel: every layer's state is the one-hot of the token fed
        self.ids: list[int] = []
        self._links: list[int] = []  # position of each cached token's predecessor (trees branch)
        self._rows_held: dict[int, tuple[list[int], list[int]]] = {}  # rows 1.. of `forward_rows` (row 0: ids, _links)
        self.forwards = 0
        self.tokens_processed = 0
        self.forward_seconds = 0.0

    @classmethod
    def from_probabilities(cls, table: Mapping[tuple[int, ...], Sequence[float]], vocab_size: int, **kw) -> "ToyModel":
        """Build from probability rows (zeros become -inf logits)."""
        logits = {k: [math.log(p) if p > 0 else -math.inf for p in row] for k, row in table.items()}
        return cls(logits, vocab_size, **kw)

    def row(self, prefix: Sequence[int]) -> torch.Tensor:
        """The logits row after `prefix` (exposed so tests can compute exact references)."""
        key = tuple(prefix[-self.order:]) if prefix else ()
        if key not in self._rows:
            raise KeyError(f"toy table has no row for context {key}")
        return self._rows[key]

    @property
    def cached_length(self) -> int:
        return len(self.ids)

    def forward(self, tokens: Sequence[int], *, keep: int = 1, hidden: bool = False, features: Sequence[int] = ()) -> ModelOutput:
        return self.forward_tree(tokens, [i - 1 for i in range(len(tokens))], keep=keep, hidden=hidden, features=features)

    def input_embedding(self) -> torch.Tensor:
        """An identity embedding (`FeatureModel`), so a head over the toy sees the token itself."""
        return torch.eye(self.vocab_size, dtype=torch.float64)

    def output_embedding(self) -> torch.Tensor:
        return torch.eye(self.vocab_size, dtype=torch.float64)

    def forward_tree(
        self, tokens: Sequence[int], parents: Sequence[int], *, keep: int = 1, hidden: bool = False, features: Sequence[int] = ()
    ) -> ModelOutput:
        """Append a token tree: `parents[i]` indexes `tokens` (-1: the last cached token).

        Each position's row depends on its own ancestors only, as tree attention would give.
        """
        out = self._feed(self.ids, self._links, tokens, parents, keep, hidden, features)
        self.forwards += 1
        return out

    def forward_rows(self, inputs: Sequence[RowInput], *, features: Sequence[int] = ()) -> list[ModelOutput]:
        """Several sequences in one call (`BatchModel`): each row is a sequence of its own, row 0
        the one `forward` extends."""
        if len({i.row for i in inputs}) != len(inputs):
            raise ValueError("each row can be fed once per forward")
        outs = []
        for request in inputs:
            ids, links = self._row(request.row)
            if not 0 <= request.start <= len(ids):
                raise ValueError(f"row {request.row} holds {len(ids)} tokens, cannot keep {request.start}")
            del ids[request.start:], links[request.start:]
            parents = request.parents if request.parents is not None else [i - 1 for i in range(len(request.tokens))]
            outs.append(self._feed(ids, links, request.tokens, parents, request.keep, request.hidden, features))
        self.forwards += 1
        return outs

    def keep_row(self, row: int, length: int, positions: Sequence[int]) -> None:
        _compact(*self._row(row), length, positions)

    def _row(self, row: int) -> tuple[list[int], list[int]]:
        """A row's tokens and links (made empty on first use)."""
        if row == 0:
            return self.ids, self._links
        return self._rows_held.setdefault(row, ([], []))

    def _feed(
        self, ids: list[int], links: list[int], tokens: Sequence[int], parents: Sequence[int], keep: int, hidden: bool,
        features: Sequence[int],
    ) -> ModelOutput:
        """Append a tree to one sequence (`ids`, `links`): its outputs."""
        check_keep(tokens, keep)
        check_features(features, self.num_layers)
        if len(parents) != len(tokens) or any(not -1 <= p < i for i, p in enumerate(parents)):
            raise ValueError("each parent must be -1 or the index of an earlier token")
        start = len(ids)
        depth = [0] * len(tokens)
        for i, p in enumerate(parents):
            depth[i] = 1 if p < 0 else depth[p] + 1
        if self.max_length is not None and start + max(depth) > self.max_length:
            raise ValueError("toy model context exceeded")
        for t, p in zip(tokens, parents):
            ids.append(int(t))
            links.append(start - 1 if p < 0 else start + p)
        self.tokens_processed += len(tokens)
        end = len(ids)
        logits = torch.stack([self.row(_history(ids, links, j, self.order)) for j in range(end - keep, end)])
        states = None
        if hidden:
            last = torch.tensor(ids[end - keep:end])
            states = torch.nn.functional.one_hot(last, self.vocab_size).to(torch.float64)
        fed = torch.nn.functional.one_hot(torch.tensor([int(t) for t in tokens]), self.vocab_size).to(torch.float64)
        return ModelOutput(logits=logits, hidden=states, features=tuple(fed for _ in features))

    def compact(self, length: int, positions: Sequence[int]) -> None:
        """Keep the first `length` cached tokens followed by those at `positions` (a tree path)."""
        _compact(self.ids, self._links, length, positions)

    def crop(self, length: int) -> None:
        if length < 0 or length > len(self.ids):
            raise ValueError(f"cannot crop a cache of {len(self.ids)} tokens to {length}")
        del self.ids[length:]
        del self._links[length:]

    def reset(self) -> None:
        self.ids.clear()
        self._links.clear()
        self._rows_held.clear()

    def __repr__(self) -> str:
        return f"ToyModel(name={self.name!r}, vocab_size={self.vocab_size}, order={self.order})"


def _history(ids: Sequence[int], links: Sequence[int], position: int, order: int) -> list[int]:
    """The last `order` tokens on the path ending at `position`."""
    out: list[int] = []
    while position >= 0 and len(out) < order:
        out.append(ids[position])
        position = links[position]
    return out[::-1]


def _compact(ids: list[int], links: list[int], length: int, positions: Sequence[int]) -> None:
    """Keep a sequence's first `length` tokens followed by those at `positions` (a tree path)."""
    previous = length - 1
    for p in positions:
        if not length <= p < len(ids) or links[p] != previous:
            raise ValueError(f"positions {list(positions)} are not a path hanging after position {length - 1}")
        previous = p
    kept = [ids[p] for p in positions]
    del ids[length:]
    del links[length:]
    for t in kept:
        links.append(len(ids) - 1)
        ids.append(t)
