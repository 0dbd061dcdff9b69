"""An incremental index of the n-grams of a growing token sequence.

Prompt lookup and the Ouroboros phrase pool both need "where did these last tokens occur before,
and what followed?". The context grows by a few tokens per round, so the index only ever looks at
the new tokens (`update`): the per-round cost does not grow with the prompt. A sequence that does
not extend the indexed one (a new `generate` call) starts the index over.

For every n-gram (1 <= n <= max_n) the index keeps its first occurrence (leftmost, what
transformers' prompt lookup uses) and its most recent occurrences (a few, newest first), as
*continuation positions*: the index of the token that followed the n-gram.
"""

from __future__ import annotations

from typing import Iterator, Literal, Sequence

Match = Literal["recent", "leftmost"]

# how many recent occurrences each n-gram remembers (enough for several distinct candidates)
RECENT_PER_NGRAM = 4
# how many trailing tokens `update` compares to decide that the sequence still extends the index
_CHECK_TAIL = 8


class NgramIndex:
    """Occurrences of every n-gram (n = 1..max_n) of a sequence that grows at its end."""

    def __init__(self, max_n: int = 2) -> None:
        if max_n < 1:
            raise ValueError(f"max_n must be >= 1, got {max_n}")
        self.max_n = max_n
        self.tokens: list[int] = []
        self._first: dict[tuple[int, ...], int] = {}
        self._recent: dict[tuple[int, ...], list[int]] = {}  # newest first, at most RECENT_PER_NGRAM

    def __len__(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        self.tokens.clear()
        self._first.clear()
        self._recent.clear()

    def update(self, sequence: Sequence[int]) -> int:
        """Index the tokens of `sequence` beyond those already indexed; return where they start.

        `sequence` must extend the indexed tokens; only its last few indexed tokens are compared
        (a full comparison would rescan the context every round). Otherwise the index starts over
        and 0 is returned.
        """
        old = len(self.tokens)
        if len(sequence) < old or any(
            sequence[i] != self.tokens[i] for i in range(max(0, old - _CHECK_TAIL), old)
        ):
            self.reset()
            old = 0
        for i in range(old, len(sequence)):
            self._append(int(sequence[i]))
        return old

    def _append(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens)  # the n-grams ending with `token` are continued at position `end`
        for n in range(1, min(self.max_n, end) + 1):
            key = tuple(self.tokens[end - n:end])
            self._first.setdefault(key, end)
            recent = self._recent.get(key)
            if recent is None:
                self._recent[key] = [end]
            else:
                recent.insert(0, end)
                del recent[RECENT_PER_NGRAM:]

    def positions(self, ngram: Sequence[int], match: Match = "recent") -> Iterator[int]:
        """Continuation positions of the occurrences of `ngram` (each <= len(self)).

        "recent": newest first (up to RECENT_PER_NGRAM of them); "leftmost": the first occurrence.
        An occurrence that ends the indexed tokens is continued only by drafted tokens (see
        `continuation`).
        """
        key = tuple(int(t) for t in ngram)
        if match == "leftmost":
            first = self._first.get(key)
            if first is not None:
                yield first
            return
        yield from self._recent.get(key, ())

    def continuation(self, position: int, length: int, extra: Sequence[int] = ()) -> list[int]:
        """`length` tokens starting at `position` of the indexed tokens followed by `extra`.

        Reading past the indexed tokens into `extra` (the tokens drafted so far) lets a match near
        the end continue a repetition periodically, as copying would.
        """
        out: list[int] = []
        n = len(self.tokens)
        for i in range(position, position + length):
            if i < n:
                out.append(self.tokens[i])
            elif i - n < len(extra):
                out.append(int(extra[i - n]))
            else:
                break
        return out

    def find(
        self, suffix: Sequence[int], *, drafted: Sequence[int] = (), match: Match = "recent", max_n: int | None = None
    ) -> int | None:
        """Continuation position of the longest n-gram ending `suffix` that has a continuation.

        `suffix` holds the last tokens (at least max_n of them, when there are) of the indexed
        tokens followed by `drafted`. Read the proposal with `continuation(position + j, 1,
        drafted)`: past the indexed end it repeats the drafted tokens, i.e. it continues a
        repetition periodically.
        """
        top = min(self.max_n if max_n is None else max_n, self.max_n, len(suffix))
        reach = len(self.tokens) + len(drafted)  # a continuation must start before the end
        for n in range(top, 0, -1):
            for position in self.positions(suffix[len(suffix) - n:], match):
                if position < reach:
                    return position
        return None

    def lookup(
        self,
        suffix: Sequence[int],
        length: int,
        *,
        drafted: Sequence[int] = (),
        match: Match = "recent",
        max_n: int | None = None,
        limit: int = 1,
    ) -> list[list[int]]:
        """Distinct continuations (each up to `length` tokens) of the longest n-gram ending `suffix`.

        `suffix` and `drafted` as in `find`. n goes from min(max_n, len(suffix)) down to 1 and
        stops at the first n with a match, as transformers' prompt lookup does; at most `limit`
        continuations are returned, newest first ("recent") or the leftmost one.
        """
        top = min(self.max_n if max_n is None else max_n, self.max_n, len(suffix))
        found: list[list[int]] = []
        for n in range(top, 0, -1):
            for position in self.positions(suffix[len(suffix) - n:], match):
                cont = self.continuation(position, length, drafted)
                if cont and cont not in found:
                    found.append(cont)
                    if len(found) >= limit:
                        return found
            if found:
                return found
        return found
