"""The draft forward that checks candidate phrases: more than one draft token per forward.

A plain draft model spends one forward per draft token. Here each forward feeds the draft model
`[last token] + phrase`: its argmax along the phrase says how much of it the draft agrees with,
that agreeing prefix is kept (plus the draft's own next token after it, which the same forward
computed) and the cache is cropped for the rest. With several phrases and a draft that supports
token trees, they are checked in that forward as a tree and the longest agreeing one wins.
Phrases the draft parts from are kept as alternatives: the target, not the draft, may be right.
"""

from __future__ import annotations

from typing import Generator, Sequence

import attrs
import torch

from specdec.draft import Branch, TokenTree
from specdec.integrations.base import LanguageModel, ModelOutput, supports_tree
from specdec.sampling import checked_max
from specdec.sequence_cache import Feed, SequenceCache

from .phrases import Alternative, Candidate, Phrases, common_prefix
from .stats import OuroborosStats

Row = tuple[torch.Tensor, torch.Tensor | None, int]  # a new draft token's (logits, hidden, argmax)


@attrs.define
class PhraseStep:
    """One draft forward over the tokens the draft model has not read and the phrases to check."""

    model: LanguageModel
    cache: SequenceCache
    phrases: Phrases  # whose agreement gates learn from each forward
    stats: OuroborosStats

    def steps(
        self,
        context: Sequence[int],
        tokens: list[int],
        candidates: list[Candidate],
        found: list[Candidate],
        *,
        first: bool,
        hidden: bool,
        alternatives: list[Alternative],
    ) -> Generator[Feed, ModelOutput, list[Row]]:
        """The last token (or the context tail at the round's first forward) plus the phrases to feed,
        as one `Feed` (a round's step, `specdec.proposer.DraftSteps`).

        Returns a row per new draft token: the agreeing phrase prefix and the draft's own token
        after it. Phrases the draft parts from become `alternatives`: fed ones where its argmax
        leaves them, the others (`found` but not fed) if its next token already differs.
        """
        cache = self.cache
        # draft tokens the draft model has not read: its own last token, and any copies after it
        lead = list(tokens) if first else list(tokens[len(cache.ids) - len(context):])
        chain = len(candidates) <= 1 or not supports_tree(self.model)  # one phrase: a plain forward
        candidates = candidates[:1] if chain else candidates
        phrases = [phrase for phrase, _ in candidates]
        tree = TokenTree.build((), [Branch(0, p) for p in phrases])
        read = context if first else None  # None: after what the cache holds
        if chain:
            out = yield Feed(cache, read, lead + list(tree.tokens), keep=len(tree) + 1, hidden=hidden)
        else:
            out = yield Feed(cache, read, lead, keep=len(tree) + 1, hidden=hidden, tree=(tree.tokens, tree.parents))
        self.stats.draft_steps += 1
        choices = checked_max(out.logits, f"the draft model {self.model.name!r}").tolist()
        path: list[int] = []  # tree nodes the draft agrees with, from the root
        node = -1
        while True:
            child = tree.children(node).get(choices[node + 1])
            if child is None:
                break
            path.append(child)
            node = child
        spelled = [tree.tokens[i] for i in path]
        if chain:
            if len(path) < len(tree):  # drop the phrase tokens the draft disagrees with
                cache.crop(len(cache.ids) - (len(tree) - len(path)))
        else:
            cache.settle(spelled)
        base = len(tokens)
        for phrase, source in candidates:
            common = common_prefix(phrase, spelled)
            self.phrases.gate(source).learn(common, len(phrase))
            if common < len(phrase):
                alternatives.append((Branch(base + common, phrase[common:]), source))
        fed_phrases = {phrase for phrase, _ in candidates}
        for phrase, source in found:  # not fed (gated out): a branch if the draft's next token differs
            if not any(f == phrase[: len(f)] for f in fed_phrases) and phrase[0] != choices[0]:
                alternatives.append((Branch(base, phrase), source))
        self.stats.phrase_tokens += len(path)
        rows = [-1] + path
        return [(out.logits[j + 1], _row(out.hidden, j + 1), choices[j + 1]) for j in rows]


def _row(hidden: torch.Tensor | None, j: int) -> torch.Tensor | None:
    return None if hidden is None else hidden[j]
