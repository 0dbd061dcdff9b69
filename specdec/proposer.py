"""The proposer protocol: what to draft."""

from __future__ import annotations

import enum

from typing import Iterable, Protocol, Sequence, runtime_checkable

import attrs

from specdec.draft import Draft
from specdec.integrations.base import LanguageModel
from specdec.features import TokenFeatures, deterministic_features
from specdec.policy import Decision, LengthPolicy
from specdec.sampling import SamplingConfig
from specdec.samplers import Sampler
from specdec.verification import Verification


@attrs.frozen
class ProposalRequest:
    """Everything a proposer gets for one round."""

    context: Sequence[int] = attrs.field(eq=False)  # committed tokens: prompt + generated
    budget: int  # hard cap on the number of tokens (>= 1)
    policy: LengthPolicy = attrs.field(eq=False)
    sampling: SamplingConfig
    sampler: Sampler = attrs.field(eq=False)
    eos_token_ids: frozenset[int] = frozenset()
    # deepest path (draft prefix + branch) the target can verify as a token tree this round;
    # 0 when the target cannot verify branches (then `Draft.branches` must stay empty)
    tree_depth: int = 0


@runtime_checkable
class Proposer(Protocol):
    """Produces draft tokens; consults `request.policy.decide` after every candidate token.

    A model proposer returns, for each token drawn at temperature > 0, the exact distribution it
    was drawn from (`Draft.q`); deterministic tokens carry None and are verified one-hot.
    All randomness goes through `request.sampler`.
    """

    name: str

    @property
    def vocab_size(self) -> int | None:
        """Vocabulary of the draft tokens (None: any token of the target's vocabulary)."""
        ...

    @property
    def forwards(self) -> int:
        """Draft-model forward calls so far (0 for model-free proposers)."""
        ...

    @property
    def forward_seconds(self) -> float:
        """Seconds spent in draft-model forwards so far (0.0 for model-free proposers)."""
        ...

    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        """A new `generate` call begins."""
        ...

    def propose(self, request: ProposalRequest) -> Draft:
        ...

    def observe(self, verification: Verification) -> None:
        ...


class ModelCounters:
    """Mixin for proposers that draft with a language model in `self.model`: the counters the
    decoder reads are the model's own."""

    model: LanguageModel

    @property
    def vocab_size(self) -> int | None:
        return self.model.vocab_size

    @property
    def forwards(self) -> int:
        return self.model.forwards

    @property
    def forward_seconds(self) -> float:
        return self.model.forward_seconds


class Offer(enum.Enum):
    """How an offer of deterministic tokens ended (see `offer_deterministic`)."""

    OPEN = "open"  # every candidate was kept: the draft may go on
    DECLINED = "declined"  # the policy did not want the next candidate here: another proposal may take the position
    OVER = "over"  # the draft is over: the policy stopped, the budget is full or an end token was kept


def offer_deterministic(request: ProposalRequest, candidates: Iterable[int], tokens: list[int], features: list[TokenFeatures]) -> Offer:
    """Offer tokens proposed without a distribution (copies, lookups) to the policy one by one.

    Kept tokens and their features are appended to `tokens` and `features`. The token is known
    before the policy is asked, so declining it cannot bias the output, and neither can proposing
    something else at that position (a draft model's token): the choice depends on the context only.
    """
    for token in candidates:
        feats = deterministic_features(token, len(tokens))
        if not request.policy.should_draft(feats):
            return Offer.DECLINED
        decision = request.policy.decide(feats)
        if decision is Decision.DROP:
            return Offer.DECLINED
        tokens.append(token)
        features.append(feats)
        if decision is Decision.STOP or len(tokens) >= request.budget or token in request.eos_token_ids:
            return Offer.OVER
    return Offer.OPEN
