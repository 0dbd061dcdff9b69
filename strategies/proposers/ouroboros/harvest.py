"""Feeding the phrase pool: from the context, from the draft and from the target's verdicts.

The pool is fed by the prompt's and the output's n-grams (full length, incrementally through the
same `NgramIndex` the context lookups use), the draft's own continuations (what it will likely say
again after these tokens), the target's argmax beyond a rejection point (Ouroboros' "useful
phrases found during verification") and the target's corrections of the branches (update in
place). The pool is bounded (LRU) and, with `warm_start`, kept across `generate` calls.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from specdec.draft import Draft
from specdec.ngram import NgramIndex
from specdec.verification import Verification

from ..phrase_pool import PhrasePool

# shortest phrase harvested from a round (the prompt's n-grams are always full length)
MIN_HARVEST = 2


@attrs.define
class Harvest:
    """Keeps the context index current and feeds the pool what each round showed."""

    index: NgramIndex
    pool: PhrasePool
    phrase_length: int
    fed: int = 0  # context positions fed to the pool

    def restart(self) -> None:
        """A new call: the context is read from its start."""
        self.index.reset()
        self.fed = 0

    def ingest(self, context: Sequence[int]) -> None:
        """Index new context tokens and feed the pool the phrases they complete (full length)."""
        start = self.index.update(context)
        if start == 0:
            self.fed = 0
        stop = len(context) - self.phrase_length
        if stop > self.fed:
            self.pool.add_sequence(self.index.tokens, self.fed, stop, min_length=self.phrase_length)
            self.fed = stop

    def learn(self, anchor: int, draft: Draft, verification: Verification) -> None:
        """Phrases from this round (`anchor`: the context token before the draft): the draft's
        continuations and the target's predictions."""
        pool = self.pool
        path = [anchor] + list(draft.tokens)
        # (a) the draft's own continuations (what it will likely say again after these tokens)
        pool.add_sequence(path, 0, len(path) - MIN_HARVEST, min_length=MIN_HARVEST)
        # (b) the target's argmax beyond the rejection point: after draft token j-1 the target
        # predicted argmax[j]; the phrase goes on while the draft fed the token the target predicted
        argmax = verification.target_argmax
        d = draft.tokens
        if verification.accepted < len(d) and len(argmax) == len(d) + 1:
            for j in range(verification.accepted + 1, len(d) + 1):
                phrase = [argmax[j]]
                k = j
                while k < len(d) and d[k] == argmax[k] and len(phrase) < self.phrase_length:
                    phrase.append(argmax[k + 1])
                    k += 1
                if len(phrase) >= MIN_HARVEST:
                    pool.add(d[j - 1], phrase)
        # (c) the target's corrections of the branches whose attachment point was reached: the
        # target's argmax along each replaces the branch in the pool (update in place)
        if draft.branches and len(verification.tree_argmax) == len(draft.tree) - len(d):
            every = tuple(argmax) + tuple(verification.tree_argmax)  # row j + 1 follows node j
            for branch, nodes in zip(draft.branches, draft.tree.branch_nodes):
                if verification.accepted < branch.at:
                    continue
                corrected = [every[branch.at]]
                for token, node in zip(branch.tokens, nodes):
                    if token != corrected[-1] or len(corrected) >= self.phrase_length:
                        break
                    corrected.append(every[node + 1])
                key = d[branch.at - 1] if branch.at else anchor
                if len(corrected) >= MIN_HARVEST:
                    pool.replace(key, branch.tokens, corrected)
