"""A bounded pool of phrases keyed by the token before them (Ouroboros' "n-gram cache").

`pool.get(t)` answers "which phrases have followed token t lately?", newest first. Ouroboros feeds
it from the prompt's n-grams, the draft's own output, the target's predictions beyond a rejection
and the target's corrections of candidate suffixes; the draft then checks a phrase in one forward
instead of one token, and the target checks a few pooled suffixes for free in its pass.

Memory is bounded twice: at most `max_phrases` phrases per key (the oldest is dropped) and at most
`max_keys` keys (the least recently used key is dropped), each phrase at most `phrase_length`
tokens, so the pool never holds more than max_keys * max_phrases * phrase_length tokens however
many generations feed it. A pool can be kept across `generate` calls (warm start) and saved to /
loaded from JSON.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Any, Iterable, Sequence

import attrs

from specdec.errors import ConfigurationError
from specdec.policy import positive_int
from specdec.progress import note

FORMAT = "specdec-phrase-pool"
VERSION = 1

Phrase = tuple[int, ...]


@attrs.define
class PhrasePool:
    """LRU phrases keyed by their preceding token (see module docstring)."""

    max_phrases: int = attrs.field(default=20, validator=positive_int)  # G in Ouroboros
    max_keys: int = attrs.field(default=4096, validator=positive_int)
    phrase_length: int = attrs.field(default=6, validator=positive_int)  # N - 1 in Ouroboros
    # key -> phrases, both in recency order (oldest first), so eviction pops from the front
    _table: OrderedDict[int, OrderedDict[Phrase, None]] = attrs.field(init=False, factory=OrderedDict, repr=False)
    _size: int = attrs.field(init=False, default=0, repr=False)

    # ------------------------------------------------------------------ reading
    def get(self, key: int, limit: int | None = None) -> list[Phrase]:
        """Phrases that followed `key`, newest first (reading counts as use for key eviction)."""
        phrases = self._table.get(key)
        if not phrases:
            return []
        self._table.move_to_end(key)
        out: list[Phrase] = []
        for phrase in reversed(phrases):
            out.append(phrase)
            if limit is not None and len(out) >= limit:
                break
        return out

    def __len__(self) -> int:
        """Number of phrases held."""
        return self._size

    def __contains__(self, item: tuple[int, Sequence[int]]) -> bool:
        key, phrase = item
        return tuple(phrase) in self._table.get(key, ())

    @property
    def keys(self) -> list[int]:
        return list(self._table)

    def stored_tokens(self) -> int:
        """Tokens held (the memory the pool uses, up to a constant per phrase)."""
        return sum(len(p) for phrases in self._table.values() for p in phrases)

    # ------------------------------------------------------------------ writing
    def add(self, key: int, phrase: Sequence[int]) -> None:
        """Insert `phrase` after `key` as the newest entry (truncated to `phrase_length`).

        A phrase that is a prefix of one already held only refreshes that longer phrase; a held
        phrase that is a prefix of the new one is replaced by it. So the pool keeps the most
        informative version of each continuation.
        """
        new = tuple(int(t) for t in phrase[: self.phrase_length])
        if not new:
            return
        key = int(key)
        phrases = self._table.get(key)
        if phrases is None:
            phrases = self._table[key] = OrderedDict()
            if len(self._table) > self.max_keys:
                _, evicted = self._table.popitem(last=False)
                self._size -= len(evicted)
        else:
            self._table.move_to_end(key)
            for old in list(phrases):
                if old[: len(new)] == new:  # already held (or a longer version of it is)
                    phrases.move_to_end(old)
                    return
                if new[: len(old)] == old:  # the new phrase extends a held one
                    del phrases[old]
                    self._size -= 1
        phrases[new] = None
        self._size += 1
        if len(phrases) > self.max_phrases:
            phrases.popitem(last=False)
            self._size -= 1

    def replace(self, key: int, old: Sequence[int], new: Sequence[int]) -> None:
        """Swap a phrase for its corrected version (Ouroboros' update in place)."""
        phrases = self._table.get(int(key))
        old = tuple(old)
        if phrases is not None and old in phrases:
            del phrases[old]
            self._size -= 1
        self.add(key, new)

    def add_sequence(self, tokens: Sequence[int], start: int = 0, stop: int | None = None, *, min_length: int = 1) -> None:
        """Add the phrase after each token `tokens[i]` for i in [start, stop).

        Each phrase is the next `phrase_length` tokens (fewer at the end of `tokens`; phrases
        shorter than `min_length` are skipped).
        """
        stop = len(tokens) - 1 if stop is None else min(stop, len(tokens) - 1)
        for i in range(max(start, 0), stop):
            phrase = tokens[i + 1 : i + 1 + self.phrase_length]
            if len(phrase) >= min_length:
                self.add(tokens[i], phrase)

    def clear(self) -> None:
        self._table.clear()
        self._size = 0

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form that keeps the recency order (oldest first)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "max_phrases": self.max_phrases,
            "max_keys": self.max_keys,
            "phrase_length": self.phrase_length,
            "table": [[key, [list(p) for p in phrases]] for key, phrases in self._table.items()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **bounds: int) -> "PhrasePool":
        """Rebuild a pool; `bounds` (max_phrases, max_keys, phrase_length) override the saved ones."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigurationError("not a specdec phrase pool (missing format marker)")
        if data.get("version") != VERSION:
            raise ConfigurationError(f"unsupported phrase pool version {data.get('version')!r}")
        settings = {name: data[name] for name in ("max_phrases", "max_keys", "phrase_length")}
        settings.update(bounds)
        pool = cls(**settings)
        try:
            for key, phrases in data["table"]:
                for phrase in phrases:
                    pool.add(_token(key), [_token(t) for t in phrase])
        except (TypeError, ValueError, KeyError) as error:
            raise ConfigurationError(f"malformed phrase pool: {error}") from None
        return pool

    def save(self, path: str | os.PathLike) -> None:
        """Write the pool as JSON (atomically: a crash never leaves half a file)."""
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, separators=(",", ":"))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, **bounds: int) -> "PhrasePool":
        """The pool saved in `path`; a missing, unreadable or malformed file is a `ConfigurationError`."""
        where = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise ConfigurationError(f"no phrase pool at {where!r}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise ConfigurationError(f"phrase pool {where!r} is not valid JSON: {error}") from None
        except OSError as error:
            raise ConfigurationError(f"cannot read the phrase pool {where!r}: {error.strerror or error}") from None
        try:
            return cls.from_dict(data, **bounds)
        except ConfigurationError as error:
            raise ConfigurationError(f"phrase pool {where!r}: {error}") from None

    @classmethod
    def open(cls, path: str | os.PathLike, **bounds: int) -> "PhrasePool":
        """The pool saved in `path`, or a new empty one, with a note, when there is no file there
        yet (`save` will create it: the way to start a pool file)."""
        if not os.path.lexists(path):
            note(f"no phrase pool at {os.fspath(path)!r} yet: starting an empty one (save_pool() writes it there)")
            return cls(**bounds)
        return cls.load(path, **bounds)

    def max_token(self) -> int:
        """Largest token id held, keys included (-1 when empty): checks a pool against a vocabulary."""
        tokens = (t for phrases in self._table.values() for p in phrases for t in p)
        return max(max(tokens, default=-1), max(self._table, default=-1))

    def items(self) -> Iterable[tuple[int, list[Phrase]]]:
        """(key, phrases oldest first) in key recency order, without touching the recency."""
        for key, phrases in self._table.items():
            yield key, list(phrases)


def _token(value: object) -> int:
    """A token id read from a saved pool: a non-negative integer (JSON has no other kind)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"token ids are integers >= 0, got {value!r}")
    return value
