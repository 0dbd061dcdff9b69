"""The Ouroboros proposer: its parameters, the protocol, and the drafting loop that ties the parts together.

Each round it copies from the context where that pays (`copies`), drafts with the draft model,
checking candidate phrases in every forward (`phrases`, `drafting`), hangs branches off the draft
for the target (`branches`), and after the verdict feeds the pool (`harvest`) and updates the
gates. Every token added, copies and phrase tokens included, is offered to the length policy.
"""

from __future__ import annotations

import os
from typing import Generator, Sequence

import attrs

from specdec.draft import Draft
from specdec.errors import ConfigurationError
from specdec.integrations.base import LanguageModel, ModelOutput, as_model
from specdec.ngram import NgramIndex
from specdec.policy import boolean, finite_in, non_negative_int, optional_positive_int, positive_int
from specdec.proposer import DraftSteps, ModelCounters, ProposalRequest, run_alone
from specdec.sampling import SamplingConfig
from specdec.sequence_cache import Feed, SequenceCache
from specdec.verification import Verification

from ..draft_model import cheaper_draft
from ..phrase_pool import PhrasePool
from .branches import Branches
from .copies import Copies
from .drafting import PhraseStep, Row
from .harvest import Harvest
from .phrases import Alternative, Phrases
from .stats import OuroborosStats


@attrs.define
class OuroborosProposer(ModelCounters):
    """Draft-model proposer with phrase extension from a bounded phrase pool."""

    name = "ouroboros"
    model: LanguageModel = attrs.field(converter=as_model)
    phrase_length: int = attrs.field(default=6, validator=positive_int)  # N - 1 of the original (N = 7)
    max_phrases: int = attrs.field(default=20, validator=positive_int)  # G: phrases kept per key
    max_keys: int = attrs.field(default=4096, validator=positive_int)  # pool bound on keys
    branches: int = attrs.field(default=1, validator=non_negative_int)  # candidate suffixes per round
    branch_length: int = attrs.field(default=4, validator=positive_int)  # tokens per suffix, at most
    draft_phrases: int = attrs.field(default=1, validator=positive_int)  # phrases checked per draft forward
    pool_branches: bool = attrs.field(default=False, validator=boolean)  # also offer pool phrases as branches
    max_ngram: int = attrs.field(default=2, validator=positive_int)  # context lookup n-gram size
    adaptive: bool = attrs.field(default=True, validator=boolean)  # gate phrases and branches by their payoff
    draft_token_cost: float = attrs.field(default=0.15, validator=finite_in(0.0, 1.0))  # extra draft-forward token / a draft forward
    target_token_cost: float = attrs.field(default=0.1, validator=finite_in(0.0, 1.0))  # extra target token / an emitted token (branches)
    copy: bool = attrs.field(default=True, validator=boolean)  # propose context copies directly (gated)
    copy_length: int = attrs.field(default=10, validator=positive_int)  # tokens per copy, at most
    copy_candidates: int = attrs.field(default=1, validator=positive_int)  # context continuations per copy; the others become branches
    copy_prior: float = attrs.field(default=0.5, validator=finite_in(0.0, 1.0))  # the copy gate's rates at the start of a call
    warm_start: bool = attrs.field(default=True, validator=boolean)  # keep the pool across generate calls
    pool_file: str | None = None  # JSON pool loaded at construction (see PhrasePool.save)
    pool: PhrasePool | None = None  # share a pool between proposers (built from the bounds if None)
    head_tokens: int | None = attrs.field(default=None, validator=optional_positive_int)  # as DraftModelProposer's
    int8: bool = attrs.field(default=False, validator=boolean)  # as DraftModelProposer's
    stats: OuroborosStats = attrs.field(init=False, factory=OuroborosStats)
    # the parts, built from the parameters above (each owns its gate, learned afresh per call)
    phrases: Phrases = attrs.field(init=False, repr=False)
    copies: Copies = attrs.field(init=False, repr=False)
    branching: Branches = attrs.field(init=False, repr=False)
    harvest: Harvest = attrs.field(init=False, repr=False)
    _cache: SequenceCache = attrs.field(init=False, repr=False)
    _step: PhraseStep = attrs.field(init=False, repr=False)
    _last: Draft | None = attrs.field(init=False, default=None, repr=False)
    _anchor: int = attrs.field(init=False, default=-1, repr=False)  # context token before the draft

    def __attrs_post_init__(self) -> None:
        self.model = cheaper_draft(self.model, self.head_tokens, self.int8)
        if self.pool is None:
            bounds = {"max_phrases": self.max_phrases, "max_keys": self.max_keys, "phrase_length": self.phrase_length}
            self.pool = PhrasePool.open(self.pool_file, **bounds) if self.pool_file is not None else PhrasePool(**bounds)
        if self.pool.max_token() >= self.model.vocab_size:
            raise ConfigurationError(
                f"the phrase pool holds token {self.pool.max_token()}, outside the draft's vocabulary of {self.model.vocab_size}"
            )
        self._cache = SequenceCache(self.model)
        index = NgramIndex(self.max_ngram)
        self.harvest = Harvest(index, self.pool, self.phrase_length)
        self.phrases = Phrases(
            index, self.pool, self.max_ngram, self.phrase_length, self.draft_phrases, self.adaptive, self.draft_token_cost
        )
        self.copies = Copies(
            self.phrases, self.stats, self.copy_length, self.copy_candidates, self.adaptive, self.copy_prior
        )
        self.branching = Branches(
            self.phrases, self.stats, self.branches, self.branch_length, self.pool_branches, self.adaptive, self.target_token_cost
        )
        self._step = PhraseStep(self.model, self._cache, self.phrases, self.stats)

    def save_pool(self, path: str | os.PathLike | None = None) -> None:
        """Write the pool to `path` (default: `pool_file`) for a later warm start."""
        target = path if path is not None else self.pool_file
        if target is None:
            raise ConfigurationError("no path given and no pool_file set")
        self.pool.save(target)

    # ------------------------------------------------------------------ protocol
    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        self._cache.restart()
        if not self.warm_start:
            self.pool.clear()
        self.harvest.restart()
        self._last = None
        # payoffs differ from prompt to prompt (an input the output copies, or not): learn afresh
        self.phrases.reset()
        self.copies.reset()
        self.branching.reset()
        self.harvest.ingest(prompt)

    def pending(self, context: Sequence[int]) -> int:
        return self._cache.unread(context)

    def propose(self, request: ProposalRequest) -> Draft:
        return run_alone(self.drafting(request))

    def drafting(self, request: ProposalRequest) -> DraftSteps:
        context = request.context
        self.harvest.ingest(context)
        self._anchor = int(context[-1])
        alternatives = yield from self._draft(request)
        branches = self.branching.choose(request, list(request.tokens), alternatives)
        draft = request.draft(branches)
        self._last = draft
        return draft

    def observe(self, verification: Verification) -> None:
        draft, self._last = self._last, None
        if draft is None or verification.drafted != len(draft):
            return
        self.harvest.learn(self._anchor, draft, verification)
        if self.copy:
            self.copies.learn(len(draft), verification.accepted)
        self.branching.learn(draft, verification)

    # ------------------------------------------------------------------ drafting
    def _draft(self, request: ProposalRequest) -> Generator[Feed, ModelOutput, list[Alternative]]:
        """Greedy drafting through `request`: a copy where one pays, else a draft forward that
        also checks candidate phrases, until the policy, the budget or an end token stops it.

        Returns the candidate phrases the draft disagreed with, as branches hanging where they
        part from the draft (the target may prefer them).
        """
        alternatives: list[Alternative] = []
        pending: list[Row] = []
        first = True
        self.copies.placed = []
        while True:
            if not pending:
                copied = self.copies.offer(request, alternatives) if self.copy else 0
                if not request.may_forward(self.copies.draft_survival(copied)):
                    break
                tokens = list(request.tokens)
                room = request.budget - len(tokens) - 1  # phrase tokens this forward may add
                fed, found = self.phrases.for_forward(request.context, tokens, room)
                pending = yield from self._step.steps(
                    request.context, tokens, fed, found, first=first, hidden=request.wants_hidden, alternatives=alternatives
                )
                first = False
            logits, state, token = pending.pop(0)
            if not request.offer(token, logits=logits, hidden=state):
                break
        self.stats.draft_tokens += request.position
        return [(b, source) for b, source in alternatives if b.at <= request.position]
