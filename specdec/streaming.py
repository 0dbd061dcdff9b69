"""Handing accepted tokens to a transformers-style streamer (`TextStreamer`, `TextIteratorStreamer`).

transformers' `generate(streamer=...)` calls `streamer.put(prompt_ids)` once with the prompt as a
[1, n] tensor, then `put` with each step's new tokens, then `end()`; its text streamers rely on
that first call to skip the prompt (`skip_prompt=True`). specdec feeds a streamer the same way,
each round's accepted tokens in one `put`. `TextDeltas` turns a token stream into text on whole
characters, for a caller that prints the stream itself.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import attrs
import torch

from specdec.errors import ConfigurationError
from specdec.integrations.base import TextCodec

INCOMPLETE = "\ufffd"  # what a tokenizer decodes a character cut short (part of its UTF-8 bytes) to


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


class TextDeltas:
    """The text of a growing token sequence, handed out in pieces that are whole characters.

    A character of several UTF-8 bytes may span several tokens, and the text of the first of them
    ends in U+FFFD until the last arrives, so the text of a prefix is not a prefix of the text.
    Each piece is the text the new tokens add to the piece before them (decoded together: a
    tokenizer drops the leading space of the first token it decodes), held back while it ends in
    U+FFFD; `flush` hands out what is still held. The pieces join to `codec.decode(ids)` whenever
    that is valid text, at a cost per piece independent of the sequence's length.
    """

    def __init__(self, codec: TextCodec) -> None:
        self.codec = codec
        self.ids: list[int] = []
        self._context = 0  # where the decoded window starts: the tokens of the previous piece
        self._shown = 0  # tokens whose text has been handed out

    def add(self, ids: Sequence[int]) -> str:
        """The text that `ids` complete (empty while they end inside a character)."""
        self.ids.extend(ids)
        return self._piece(final=False)

    def flush(self) -> str:
        """The text still held back (an incomplete character at the end shows as U+FFFD)."""
        return self._piece(final=True)

    def _piece(self, *, final: bool) -> str:
        before = self.codec.decode(self.ids[self._context : self._shown])
        text = self.codec.decode(self.ids[self._context :])
        if len(text) <= len(before) or (text.endswith(INCOMPLETE) and not final):
            return ""
        self._context, self._shown = self._shown, len(self.ids)
        return text[len(before) :]
