"""The `bigram` proposer: draft without a model, from the text's own token bigrams."""

from __future__ import annotations

from typing import Sequence

import attrs

from specdec.draft import Draft
from specdec.policy import positive_int
from specdec.proposer import ModelFree, ProposalRequest
from specdec.sampling import SamplingConfig
from specdec.verification import Verification


@attrs.define
class BigramProposer(ModelFree):
    """Propose the most frequent successor of the last token, chained, learned from the context.

    Bigram counts cover the prompt and everything generated so far (ties go to the successor seen
    most recently); a token never followed by anything ends the draft. The tokens are proposed
    deterministically (no draft distribution), so the verifier checks them one-hot: exact at any
    temperature. No model forward is spent, which pays off on text that repeats itself. A bigram
    is proposed only once it has been seen `min_count` times.
    """

    name = "bigram"
    min_count: int = attrs.field(default=1, validator=positive_int)
    # successor counts: token -> {next token: (count, last position seen)}
    _followers: dict[int, dict[int, tuple[int, int]]] = attrs.field(init=False, factory=dict, repr=False)
    _learned: int = attrs.field(init=False, default=0, repr=False)

    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        self._followers = {}
        self._learned = 0

    def propose(self, request: ProposalRequest) -> Draft:
        self._learn(request.context)

        def chain():
            last = request.context[-1]
            while (token := self._successor(last)) is not None:
                yield token
                last = token

        # each token goes to the policy, which may end the round first (the request's drafting loop)
        request.offer_each(chain())
        return request.draft()

    def observe(self, verification: Verification) -> None:
        pass  # the next `propose` learns the emitted tokens from its context

    def _learn(self, context: Sequence[int]) -> None:
        """Count the bigrams not counted yet (the context only grows within a call)."""
        if len(context) < self._learned:
            self._followers, self._learned = {}, 0
        for i in range(max(self._learned - 1, 0), len(context) - 1):
            successors = self._followers.setdefault(int(context[i]), {})
            count, _ = successors.get(int(context[i + 1]), (0, -1))
            successors[int(context[i + 1])] = (count + 1, i)
        self._learned = len(context)

    def _successor(self, token: int) -> int | None:
        successors = self._followers.get(token)
        if not successors:
            return None
        best, (count, _) = max(successors.items(), key=lambda item: item[1])
        return best if count >= self.min_count else None
