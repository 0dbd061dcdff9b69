"""Prompt lookup: copy what followed the last tokens' earlier occurrence in the context (no model).

As transformers' prompt-lookup decoding: for n from `max_ngram` down to 1, find an earlier
occurrence of the context's last n tokens and propose the tokens that followed it. Inputs that
the output repeats (summaries, extraction, RAG, code edits) are full of such copies, and a lookup
costs no model forward at all.

Which occurrence: `match="recent"` (the default) takes the most recent one, which follows the text
being generated now when the output copies a passage; `match="leftmost"` takes the first one, as
transformers does. The tokens are deterministic proposals (q None, verified one-hot), so the
output stays exactly the target's at any temperature; the length policy is asked after each one.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from specdec.draft import Draft
from specdec.ngram import NgramIndex
from specdec.policy import one_of, positive_int
from specdec.proposer import ModelFree, ProposalRequest
from specdec.sampling import SamplingConfig
from specdec.verification import Verification


@attrs.define
class PromptLookupProposer(ModelFree):
    """Draft by n-gram lookup in the context (prompt + generated text)."""

    name = "prompt-lookup"
    max_ngram: int = attrs.field(default=2, validator=positive_int)
    num_tokens: int = attrs.field(default=10, validator=positive_int)
    match: str = attrs.field(default="recent", validator=one_of("recent", "leftmost"))
    _index: NgramIndex = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._index = NgramIndex(self.max_ngram)

    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        self._index.reset()
        self._index.update(prompt)

    def propose(self, request: ProposalRequest) -> Draft:
        index = self._index
        index.update(request.context)
        position = index.find(request.context, match=self.match)  # type: ignore[arg-type]
        if position is None:
            return request.draft()

        def continuation():
            while request.position < self.num_tokens:
                # read on through the drafted tokens: a match near the end repeats periodically
                yield index.continuation(position + request.position, 1, list(request.tokens))[0]

        request.offer_each(continuation())
        return request.draft()

    def observe(self, verification: Verification) -> None:
        pass
