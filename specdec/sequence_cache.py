"""Keep a model's KV cache in step with a token sequence, reusing the longest common prefix.

Target and draft both use this: before a forward, the cache is cropped to the part that still
matches the committed context (rejected draft tokens fall away) and only the missing tokens are
fed. The prefix is compared once per generation; afterwards only the few tokens past the last
verified length are compared, so the per-round work does not grow with the prompt.
"""

from __future__ import annotations

from typing import Sequence

from specdec.integrations.base import LanguageModel, ModelOutput


class SequenceCache:
    def __init__(self, model: LanguageModel) -> None:
        self.model = model
        self.ids: list[int] = []
        self._verified = 0  # self.ids[:_verified] is known to equal the context's prefix

    def restart(self) -> None:
        """A new generation: the cached prefix will be compared against the new context once."""
        self._verified = 0

    def reset(self) -> None:
        self.ids.clear()
        self._verified = 0
        self.model.reset()

    def sync(self, context: Sequence[int], extra: Sequence[int] = (), *, keep: int = 1, hidden: bool = False) -> ModelOutput:
        """Feed whatever of `context + extra` the cache lacks (at least the last context token).

        Returns the outputs for the last `keep` positions of `context + extra`.
        """
        if getattr(self.model, "cache_owner", None) is not self:
            # another SequenceCache used this model since: its cache holds someone else's tokens
            self.model.reset()
            self.ids.clear()
            self._verified = 0
            self.model.cache_owner = self
        n = min(self._verified, len(self.ids), len(context))
        limit = min(len(self.ids), len(context))
        while n < limit and self.ids[n] == context[n]:
            n += 1
        n = min(n, len(context) - 1)
        self._verified = n
        self._crop(n)
        return self.extend(list(context[n:]) + list(extra), keep=keep, hidden=hidden)

    def extend(self, tokens: Sequence[int], *, keep: int = 1, hidden: bool = False) -> ModelOutput:
        """Feed `tokens` after what the cache holds (call `sync` first in a round)."""
        out = self.model.forward(tokens, keep=keep, hidden=hidden)
        self.ids.extend(tokens)
        return out

    def _crop(self, length: int) -> None:
        if length < len(self.ids):
            self.model.crop(length)
            del self.ids[length:]
