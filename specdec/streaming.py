"""Handing accepted tokens to a transformers-style streamer (`TextStreamer`, `TextIteratorStreamer`).

transformers' `generate(streamer=...)` calls `streamer.put(prompt_ids)` once with the prompt as a
[1, n] tensor, then `put` with each step's new tokens, then `end()`; its text streamers rely on
that first call to skip the prompt (`skip_prompt=True`). specdec feeds a streamer the same way,
each round's accepted tokens in one `put`.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import attrs
import torch

from specdec.errors import ConfigurationError


@runtime_checkable
class TokenStreamer(Protocol):
    """What transformers' `BaseStreamer` declares."""

    def put(self, value: torch.Tensor) -> None: ...

    def end(self) -> None: ...


def checked_streamer(streamer: Any) -> TokenStreamer | None:
    if streamer is not None and not isinstance(streamer, TokenStreamer):
        raise ConfigurationError(f"streamer must have put(tensor) and end() like transformers' streamers, got {type(streamer).__name__}")
    return streamer


@attrs.define
class StreamerFeed:
    """Feeds one generation to a streamer: the prompt first, then every accepted token, then end."""

    streamer: TokenStreamer | None

    def prompt(self, ids: Sequence[int]) -> None:
        if self.streamer is not None:
            self.streamer.put(torch.tensor([list(ids)], dtype=torch.long))

    def tokens(self, ids: Sequence[int]) -> None:
        if self.streamer is not None and ids:
            self.streamer.put(torch.tensor(list(ids), dtype=torch.long))

    def end(self) -> None:
        if self.streamer is not None:
            self.streamer.end()
