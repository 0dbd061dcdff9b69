"""The proposer protocol (what to draft) and the one drafting loop every proposer goes through.

A proposer chooses candidate tokens; the `ProposalRequest` it receives decides, with the length
policy, which of them go into the draft. Every rule of a round lives in the request, once:

- before a model forward, `may_forward()` asks the policy (and counts the forward);
- a token drawn at random is drawn by the request (`draw`), after `should_draft` has seen the
  distribution, so that no policy can drop a sampled token because of its value (that would bias
  the output; see `specdec.policy`): DROP after a random draw is an error;
- a token chosen without randomness (an argmax, a copy, a lookup: a function of the context)
  is offered with `offer`; the policy may decline it, and the proposer may then offer something
  else at that position;
- a proposer that can estimate a token's survival (the chance the verifier accepts it after the
  tokens before it) reports it with the offer, and one for the token a forward would draft with
  `may_forward`; the policy's `payoff` then decides whether the token, or the forward, pays
  (see `specdec.payoff`);
- the round's budget, end-of-sequence tokens and the policy's STOP end the draft (`over`).

The request then builds the `Draft` with the facts of the round (tokens, their distributions and
features, draft-model forwards), so policies read what happened instead of guessing it.
"""

from __future__ import annotations

from typing import Generator, Iterable, Protocol, Sequence, runtime_checkable

import attrs
import torch

from specdec.draft import Branch, Draft
from specdec.errors import ConfigurationError
from specdec.features import TokenFeatures, deterministic_features, draft_features, token_features
from specdec.integrations.base import LanguageModel, ModelOutput
from specdec.policy import Decision, LengthPolicy
from specdec.samplers import Purpose, Sampler, Site
from specdec.sampling import SamplingConfig, checked_max, warp
from specdec.sequence_cache import Feed
from specdec.verification import Verification


@attrs.define
class ProposalRequest:
    """One round's drafting: what a proposer gets, and the loop it drafts through."""

    context: Sequence[int] = attrs.field(eq=False)  # committed tokens: prompt + generated
    budget: int  # hard cap on the number of tokens (>= 1)
    policy: LengthPolicy = attrs.field(eq=False)
    sampling: SamplingConfig
    sampler: Sampler = attrs.field(eq=False)
    eos_token_ids: frozenset[int] = frozenset()
    # deepest path (draft prefix + branch) the target can verify as a token tree this round;
    # 0 when the target cannot verify branches (then the draft must have no branches)
    tree_depth: int = 0
    _tokens: list[int] = attrs.field(init=False, factory=list, eq=False)
    _q: list[torch.Tensor | None] = attrs.field(init=False, factory=list, eq=False, repr=False)
    _features: list[TokenFeatures] = attrs.field(init=False, factory=list, eq=False, repr=False)
    _forwards: int = attrs.field(init=False, default=0, eq=False)
    _over: bool = attrs.field(init=False, default=False, eq=False)
    _reach: float = attrs.field(init=False, default=1.0, eq=False)

    @property
    def tokens(self) -> tuple[int, ...]:
        """The draft so far."""
        return tuple(self._tokens)

    @property
    def position(self) -> int:
        """Draft position of the next token (tokens kept so far)."""
        return len(self._tokens)

    @property
    def over(self) -> bool:
        """The draft is complete: the policy stopped it, the budget is full or an end token was kept."""
        return self._over

    @property
    def reach(self) -> float:
        """The chance that the whole draft so far is used, from the survivals reported with it
        (tokens without an estimate count as certain)."""
        return self._reach

    @property
    def wants_hidden(self) -> bool:
        """Whether the policy reads the draft's hidden states (ask the model for them)."""
        return self.policy.wants_hidden

    def may_forward(self, survival: float | None = None) -> bool:
        """Ask before each draft-model forward; run the model only if True (it is counted).
        `survival`: the proposer's estimate that the forward's token is accepted after the draft
        so far (None: no estimate), which the policy's payoff weighs against the forward's price."""
        if self._over:
            return False
        if survival is not None and not self.policy.payoff.forwards(self._reach * survival):
            return False
        if not self.policy.allows_forward(len(self._tokens)):
            return False
        self._forwards += 1
        return True

    def draw(self, logits: torch.Tensor, hidden: torch.Tensor | None = None, *, who: str = "the draft model") -> bool:
        """Draw the next token from the draft's `logits` row (argmax when greedy, else a sample of
        the warped distribution, whose q goes to the verifier). True: kept, drafting may go on."""
        if self._over:
            return False
        position = len(self._tokens)
        before = draft_features(logits, position, hidden)
        if not self.policy.should_draft(before):
            self._over = True
            return False
        token, q = self._sample(logits, who)
        features = token_features(logits, token, position, hidden, before=before)
        decision = self.policy.decide(features)
        if decision is Decision.DROP and q is not None:
            raise ConfigurationError(
                f"policy {self.policy.name!r} dropped a token after it was drawn at random; that biases the "
                "output (see specdec.policy): decide before the draw, in should_draft()"
            )
        return self._settle(decision, token, q, features, end_on_decline=True)

    def _sample(self, logits: torch.Tensor, who: str) -> tuple[int, torch.Tensor | None]:
        """The token drawn from one row of draft logits and the exact distribution it was drawn
        from (None when greedy: the argmax is then a deterministic proposal). Coupled sampling
        draws on the position's shared noise: the token is a function of that noise, a
        deterministic proposal too, which the verifier's one-hot rule checks on the same noise."""
        best = int(checked_max(logits, who))
        if self.sampling.greedy:
            return best, None
        q = warp(logits, self.sampling)
        start = len(self.context)
        position = start + len(self._tokens)
        if self.sampling.coupled:
            return self.sampler.categorical(q, Site(position, Purpose.COUPLED, start)), None
        return self.sampler.categorical(q, Site(position, Purpose.DRAFT, start)), q

    def offer(
        self,
        token: int,
        *,
        logits: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        survival: float | None = None,
    ) -> bool:
        """Offer a token chosen without randomness (an argmax, a copy, a lookup), with the draft's
        `logits` row at that position when a model computed one, and the proposer's `survival`
        estimate when it has one. True: kept, drafting may go on; False: declined (`over` is
        False: another proposal may take the position) or kept last."""
        if self._over:
            return False
        position = len(self._tokens)
        token = int(token)
        reach = None if survival is None else self._reach * survival
        if reach is not None and not self.policy.payoff.keeps(reach):
            return False
        if logits is None:
            before = deterministic_features(token, position, survival=survival, reach=reach)
        else:
            before = draft_features(logits, position, hidden)
        if not self.policy.should_draft(before):
            return False
        if logits is None:
            features = before
        else:
            features = token_features(logits, token, position, hidden, before=before)
            features.survival, features.reach = survival, reach
        decision = self.policy.decide(features)
        return self._settle(decision, token, None, features, end_on_decline=False)

    def offer_each(self, tokens: Iterable[int], survivals: Iterable[float] | None = None) -> int:
        """Offer deterministic tokens one by one (with their survival estimates, if given) until
        one is not kept; returns how many were kept."""
        before = len(self._tokens)
        estimates = iter(survivals) if survivals is not None else None
        for token in tokens:
            survival = None if estimates is None else next(estimates)
            if not self.offer(token, survival=survival):
                break
        return len(self._tokens) - before

    def _settle(
        self, decision: Decision, token: int, q: torch.Tensor | None, features: TokenFeatures, *, end_on_decline: bool
    ) -> bool:
        """Keep the token unless dropped; end the draft on STOP, a full budget or an end token."""
        if decision is Decision.DROP:
            self._over = end_on_decline
            return False
        self._tokens.append(token)
        self._q.append(q)
        self._features.append(features)
        if features.reach is not None:
            self._reach = features.reach
        if decision is Decision.STOP or len(self._tokens) >= self.budget or token in self.eos_token_ids:
            self._over = True
        return not self._over

    def draft(self, branches: Sequence[Branch] = ()) -> Draft:
        """The round's draft, with its branches (deterministic alternatives for a token tree)."""
        return Draft(
            tuple(self._tokens), tuple(self._q), tuple(self._features), tuple(branches), forwards=self._forwards, start=len(self.context)
        )


@runtime_checkable
class Proposer(Protocol):
    """Produces draft tokens through `request` (see the module docstring): model tokens with
    `request.may_forward()` then `request.draw(logits)` or `request.offer(token, logits=...)`,
    copies and lookups with `request.offer(token)`, and returns `request.draft(branches)`.
    All randomness goes through the request.
    """

    name: str

    @property
    def models(self) -> tuple[LanguageModel, ...]:
        """The models the proposer runs forwards on: a generation claims each of them (each holds
        one sequence's cache, `specdec.exclusive`) and checks that each shares the target's
        tokenizer. Empty for model-free proposers."""
        ...

    @property
    def target_layers(self) -> tuple[int, ...]:
        """The target layers whose hidden states the proposer drafts from (a feature-level head,
        EAGLE): the decoder asks the target's verify forward for them and hands those of the
        positions each round commits to `observe` (`Verification.target_features`). Layer L is the
        residual stream after L decoder layers, the target's layer count its final normed output
        (`FeatureModel`). Empty for proposers that read none (their own model, or the context)."""
        ...

    @property
    def vocab_size(self) -> int | None:
        """Vocabulary of the draft tokens (None: any token of the target's vocabulary)."""
        ...

    @property
    def max_length(self) -> int | None:
        """Longest context the proposer's model holds (None: no limit, or no model)."""
        ...

    @property
    def forwards(self) -> int:
        """Draft-model forward calls so far (0 for model-free proposers)."""
        ...

    @property
    def forward_seconds(self) -> float:
        """Seconds spent in draft-model forwards so far (0.0 for model-free proposers)."""
        ...

    def pending(self, context: Sequence[int]) -> int:
        """Context tokens the proposer's model has not read: its first forward of the next round
        reads them (the whole prompt at the start of a call; 0 for model-free proposers)."""
        ...

    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        """A new `generate` call begins."""
        ...

    def propose(self, request: ProposalRequest) -> Draft:
        ...

    def observe(self, verification: Verification) -> None:
        ...


DraftSteps = Generator[Feed, ModelOutput, Draft]
"""A round's drafting one model forward at a time: it yields the `Feed` it needs next, is sent
that forward's output and returns the draft."""


@runtime_checkable
class SteppedProposer(Proposer, Protocol):
    """Optional: a proposer whose draft-model forwards can join other sequences' forwards.

    `drafting(request)` is `propose(request)` written as `DraftSteps`: instead of running a forward
    it yields the forward (`Feed`) and takes the output it is sent. Alone, `propose` runs each feed
    at once (`run_alone`); in a batch whose draft model holds a row per sequence, the decoder feeds
    every sequence's step in one forward (`specdec.stepping`). Same tokens either way.
    """

    def drafting(self, request: ProposalRequest) -> DraftSteps:
        ...


def run_alone(steps: DraftSteps) -> Draft:
    """Drive `steps` by running each forward it asks for on its own; the draft it returns."""
    try:
        feed = next(steps)
        while True:
            feed = steps.send(feed.run())
    except StopIteration as done:
        return done.value


class ModelCounters:
    """Mixin for proposers that draft with a language model in `self.model`: the facts the
    decoder reads are the model's own."""

    model: LanguageModel

    @property
    def models(self) -> tuple[LanguageModel, ...]:
        return (self.model,)

    @property
    def target_layers(self) -> tuple[int, ...]:
        return ()

    @property
    def vocab_size(self) -> int | None:
        return self.model.vocab_size

    @property
    def max_length(self) -> int | None:
        return self.model.max_length

    @property
    def forwards(self) -> int:
        return self.model.forwards

    @property
    def forward_seconds(self) -> float:
        return self.model.forward_seconds


class ModelFree:
    """Mixin for proposers without a model (lookups, rules): no vocabulary limit, no forwards."""

    @property
    def models(self) -> tuple[LanguageModel, ...]:
        return ()

    @property
    def target_layers(self) -> tuple[int, ...]:
        return ()

    @property
    def vocab_size(self) -> int | None:
        return None

    @property
    def max_length(self) -> int | None:
        return None

    @property
    def forwards(self) -> int:
        return 0

    @property
    def forward_seconds(self) -> float:
        return 0.0

    def pending(self, context: Sequence[int]) -> int:
        return 0
