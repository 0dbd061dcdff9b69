"""The speculative loop: propose, verify in one target forward, emit, adapt.

One round:
  1. the policy caps the draft length (0 = a plain target step);
  2. the proposer drafts, asking the policy after every candidate token;
  3. ONE target forward over the uncached context tail plus the draft gives p for every position;
  4. the verifier keeps a prefix and adds the correction or bonus token;
  5. policy and proposer observe the verdict; caches are cropped lazily at the next sync.
Target-only decoding is the same loop with no proposer (every round drafts nothing).
"""

from __future__ import annotations

import time
from typing import Iterator, Sequence

import attrs

from specdec.draft import EMPTY_DRAFT, Draft
from specdec.errors import ConfigurationError, InputError, VocabularyMismatchError
from specdec.integrations.base import ChatCodec, LanguageModel, TextCodec, as_model, supports_tree
from specdec.policy import LengthPolicy, ReferencePolicy, RoundState
from specdec.proposer import ProposalRequest, Proposer
from specdec.samplers import Sampler, TorchSampler
from specdec.sampling import SamplingConfig
from specdec.sequence_cache import SequenceCache
from specdec.stats import GenerationResult, StatsRecorder
from specdec.verifier import Verifier


DEFAULT_POLICY = ("fixed", {"k": 4})  # by registry name: the core names no strategy


def _default_policy() -> LengthPolicy:
    from specdec.plugins import make_policy

    name, params = DEFAULT_POLICY
    return make_policy(name, **params)


@attrs.define
class Decoder:
    """Speculative decoding with a pluggable proposer and length policy.

    `Decoder(target, proposer=None)` decodes with the target alone (the baseline), through the
    same loop and adapter.
    """

    target: LanguageModel = attrs.field(converter=as_model)
    proposer: Proposer | None = None
    policy: LengthPolicy = attrs.field(factory=_default_policy)
    verifier: Verifier = attrs.field(factory=Verifier)
    codec: TextCodec | None = None
    _cache: SequenceCache = attrs.field(init=False, repr=False)
    last_result: GenerationResult | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.codec is None:
            self.codec = self.target.codec
        if self.proposer is not None:
            vocab = self.proposer.vocab_size
            if vocab is not None and vocab != self.target.vocab_size:
                raise VocabularyMismatchError(
                    f"the proposer {self.proposer.name!r} drafts over {vocab} tokens but the target "
                    f"{self.target.name!r} has {self.target.vocab_size}; a draft model must share the target's tokenizer"
                )
        self._cache = SequenceCache(self.target)

    # ------------------------------------------------------------------ public API
    def generate(
        self,
        prompt: str | Sequence[int],
        max_new_tokens: int = 128,
        *,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        stop: Sequence[str] = (),
        chat: bool = False,
        sampler: Sampler | None = None,
    ) -> GenerationResult:
        """Generate up to `max_new_tokens` tokens; the output is distributed exactly as the target's."""
        run = self._run(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, chat, sampler)
        for _ in run:
            pass
        return run.result

    def stream(
        self,
        prompt: str | Sequence[int],
        max_new_tokens: int = 128,
        *,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        stop: Sequence[str] = (),
        chat: bool = False,
        sampler: Sampler | None = None,
    ) -> Iterator[int]:
        """Yield token ids as soon as the verifier accepts them (the result is `last_result` after)."""
        run = self._run(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, chat, sampler)
        for tokens in run:
            yield from tokens

    def prepare(self, prompt: str | Sequence[int], max_new_tokens: int = 128, *, chat: bool = False) -> bool:
        """Give a policy that needs the target's greedy output of `prompt` (`ReferencePolicy`: the
        analysis-only oracle) that output, from one target-only run; returns whether it did."""
        if not isinstance(self.policy, ReferencePolicy):
            return False
        reference = Decoder(self.target, codec=self.codec).generate(prompt, max_new_tokens, chat=chat)
        self.policy.set_continuation(list(reference.prompt_ids) + list(reference.ids))
        return True

    def encode(self, prompt: str | Sequence[int], *, chat: bool = False) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise InputError("the prompt is empty")
            if self.codec is None:
                raise InputError("this target has no tokenizer: pass token ids instead of text")
            if chat:
                if not isinstance(self.codec, ChatCodec):
                    raise InputError("this tokenizer has no chat template")
                return list(self.codec.apply_chat_template(prompt))
            ids = list(self.codec.encode(prompt))
        else:
            if chat:
                raise InputError("chat=True needs a text prompt")
            ids = [int(t) for t in prompt]
        if not ids:
            raise InputError("the prompt is empty")
        bad = [t for t in ids if not 0 <= t < self.target.vocab_size]
        if bad:
            raise InputError(f"prompt token ids {bad[:5]} are outside the vocabulary (size {self.target.vocab_size})")
        return ids

    # ------------------------------------------------------------------ the loop
    def _run(self, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, chat, sampler) -> "_Run":
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigurationError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
        ids = self.encode(prompt, chat=chat)
        room = self._context_room(len(ids))
        stop = tuple(stop)
        if any(not s for s in stop):
            raise InputError("stop strings must be non-empty")
        if stop and self.codec is None:
            raise InputError("stop strings need a tokenizer")
        return _Run(self, ids, min(max_new_tokens, room), max_new_tokens, sampling, sampler or TorchSampler(seed), stop)

    def _context_room(self, prompt_length: int) -> int:
        proposer_limit = self.proposer.max_length if self.proposer is not None else None
        limits = [m for m in (self.target.max_length, proposer_limit) if m is not None]
        limit = min(limits) if limits else None
        if limit is None:
            return 1 << 62
        if prompt_length >= limit:
            raise InputError(f"the prompt has {prompt_length} tokens but the context holds {limit}: nothing can be generated")
        return limit - prompt_length


def _draft_seconds(proposer: Proposer | None) -> float:
    return proposer.forward_seconds if proposer is not None else 0.0


class _Run:
    """One generation: iterating yields the tokens emitted by each round; `.result` at the end."""

    def __init__(self, decoder: Decoder, prompt: list[int], limit: int, requested: int, sampling, sampler, stop) -> None:
        self.d = decoder
        self.prompt = prompt
        self.limit = limit
        self.requested = requested
        self.sampling = sampling
        self.sampler = sampler
        self.stop = stop
        self.context = list(prompt)
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[list[int]]:
        d, sampling, sampler = self.d, self.sampling, self.sampler
        target, proposer, policy = d.target, d.proposer, d.policy
        eos = target.eos_token_ids
        trees = supports_tree(target)
        d._cache.restart()
        policy.start()
        if proposer is not None:
            proposer.start(self.prompt, sampling)
        rec = StatsRecorder(
            target.forwards, proposer.forwards if proposer else 0, target.tokens_processed,
            target.forward_seconds, _draft_seconds(proposer),
        )
        context, generated = self.context, 0
        finish = "length" if self.limit == self.requested else "context"
        stop_window = max((len(s) for s in self.stop), default=0)
        while generated < self.limit:
            remaining = self.limit - generated
            t0 = time.perf_counter()
            draft = EMPTY_DRAFT
            budget = 0
            if proposer is not None and remaining > 1:
                state = RoundState(len(context), generated, remaining, proposer.pending(context))
                budget = min(policy.begin_round(state), remaining - 1)
            if budget > 0:
                request = ProposalRequest(context, budget, policy, sampling, sampler, eos, remaining - 1 if trees else 0)
                draft = proposer.propose(request)
                self._check_draft(draft, budget, request.tree_depth)
            t1 = time.perf_counter()
            if draft.branches:  # the draft and its branches as one token tree, in the same forward
                tree = draft.tree
                out = d._cache.sync(context, tree=(tree.tokens, tree.parents), keep=len(tree) + 1)
            else:
                out = d._cache.sync(context, draft.tokens, keep=len(draft) + 1)
            verdict = d.verifier.verify(draft, out.logits, sampling, sampler, eos)
            t2 = time.perf_counter()
            verdict = attrs.evolve(
                verdict, draft_seconds=t1 - t0, verify_seconds=t2 - t1, context_length=len(context), draft_forwards=draft.forwards
            )
            if proposer is not None:
                policy.observe(verdict)
                proposer.observe(verdict)
            rec.draft_seconds += t1 - t0
            rec.verify_seconds += t2 - t1
            rec.record_round(len(draft), verdict.accepted)
            if draft.branches:
                rec.record_branches(len(draft.tree) - len(draft), verdict.branch_tokens)
            emitted = list(verdict.tokens)
            context.extend(emitted)
            generated += len(emitted)
            if self.stop:
                cut = self._stop_cut(context, generated, len(emitted) + stop_window)
                if cut is not None:
                    del context[len(context) - (generated - cut):]
                    emitted = emitted[: len(emitted) - (generated - cut)]
                    generated = cut
                    finish = "stop"
            yield emitted
            if finish == "stop":
                break
            if verdict.eos:
                finish = "eos"
                break
        new_ids = context[len(self.prompt):]
        stats = rec.freeze(
            len(new_ids), target.forwards, proposer.forwards if proposer else 0, target.tokens_processed,
            target.forward_seconds, _draft_seconds(proposer),
        )
        text = d.codec.decode(new_ids) if d.codec is not None else ""
        self.result = GenerationResult(text, tuple(new_ids), tuple(self.prompt), finish, stats)
        d.last_result = self.result

    def _check_draft(self, draft: Draft, budget: int, tree_depth: int = 0) -> None:
        if len(draft) > budget:
            raise ConfigurationError(f"the proposer returned {len(draft)} tokens, over the round's budget of {budget}")
        vocab = self.d.target.vocab_size
        if any(not 0 <= t < vocab for t in draft.tokens):
            raise ConfigurationError("the proposer returned token ids outside the target's vocabulary")
        if draft.branches:
            if tree_depth == 0:
                raise ConfigurationError(f"the proposer returned branches but the target {self.d.target.name!r} cannot verify token trees")
            if draft.tree.depth() > tree_depth:
                raise ConfigurationError(f"the proposer's branches reach depth {draft.tree.depth()}, over this round's {tree_depth}")
            if any(not 0 <= t < vocab for t in draft.tree.tokens):
                raise ConfigurationError("the proposer returned branch token ids outside the target's vocabulary")

    def _stop_cut(self, context: list[int], generated: int, window: int) -> int | None:
        """Number of generated tokens to keep if a stop string appeared this round, else None."""
        codec = self.d.codec
        start = len(context) - generated
        tail = context[max(start, len(context) - window):]
        if not any(s in codec.decode(tail) for s in self.stop):
            return None
        new = context[start:]
        for n in range(max(generated - window, 0), generated + 1):
            text = codec.decode(new[:n])
            if any(s in text for s in self.stop):
                return n
        return generated
