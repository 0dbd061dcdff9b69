"""Candidate phrases: what may follow the draft so far, and which of them a draft forward checks.

Candidates come from the context (what followed the last `max_ngram` tokens, by n-gram match,
newest first) and then from the phrase pool (the newest phrases keyed by the last token). A phrase
token fed to the draft model costs a little draft compute (`draft_token_cost` of a forward) and
saves a whole forward when the draft agrees with it, so with `adaptive` each source's phrases are
cut by its agreement gate. Context phrases come first, then the pool's (ranking the sources by
the draft's recent agreement instead made no measurable difference: docs/design-notes.md). Phrases
the draft parts from become branches: the target may agree with them where the draft does not.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from specdec.draft import Branch
from specdec.ngram import NgramIndex

from ..phrase_pool import PhrasePool
from .gates import AgreementGate

# where a candidate came from (also the labels of `OuroborosStats.branch_kinds`)
CONTEXT = "context"
POOL = "pool"

Candidate = tuple[tuple[int, ...], str]  # (phrase, source)
Alternative = tuple[Branch, str]  # a phrase the draft parted from, hung where it parts, and its source


@attrs.define
class Phrases:
    """Finds candidate phrases and gates those fed to the draft model, per source."""

    index: NgramIndex
    pool: PhrasePool
    max_ngram: int
    phrase_length: int
    per_forward: int  # phrases checked per draft forward
    adaptive: bool
    token_cost: float  # an extra token in a draft forward / a draft forward
    gates: dict[str, AgreementGate] = attrs.field(factory=dict)  # per source

    def reset(self) -> None:
        """A new call: every source's record starts afresh."""
        self.gates.clear()

    def gate(self, source: str) -> AgreementGate:
        """How often the draft agrees with the next phrase token from `source`."""
        return self.gates.setdefault(source, AgreementGate())

    def find(
        self, context: Sequence[int], drafted: list[int], length: int, count: int, *, pool: bool = True
    ) -> list[Candidate]:
        """Distinct continuations of context + drafted with their source: up to `count` from the
        context (n-gram match, newest first), then up to `count` more from the pool (newest)."""
        tail = (list(context[-self.max_ngram:]) + drafted)[-self.max_ngram:]
        found: list[Candidate] = []
        seen: set[tuple[int, ...]] = set()
        for cont in self.index.lookup(tail, length, drafted=drafted, limit=count):
            found.append((tuple(cont), CONTEXT))
            seen.add(tuple(cont))
        if pool:
            taken = 0
            for phrase in self.pool.get(tail[-1], limit=count + len(found)):
                phrase = phrase[:length]
                if phrase not in seen:
                    found.append((phrase, POOL))
                    seen.add(phrase)
                    taken += 1
                    if taken >= count:
                        break
        return found

    def for_forward(self, context: Sequence[int], tokens: list[int], room: int) -> tuple[list[Candidate], list[Candidate]]:
        """Candidate phrases at the next draft position: (those to feed, cut to the length that
        pays; all of them, which may become branches where the draft parts from them).

        With a per-source agreement rate a, the k-th token is agreed with probability a**k, so
        tokens are fed while a**k > `token_cost`. `room`: phrase tokens the forward may add.
        """
        found = self.find(context, tokens, max(1, min(room, self.phrase_length)), self.per_forward)
        if room <= 0:
            return [], found
        if not self.adaptive:
            return found[: self.per_forward], found
        fed = []
        for phrase, source in found:
            if len(fed) >= self.per_forward:
                break
            length = self.gate(source).length(self.token_cost, len(phrase))
            if length:
                fed.append((phrase[:length], source))
        return fed, found


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    common = 0
    for x, y in zip(a, b):
        if x != y:
            break
        common += 1
    return common
