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
from typing import Any, Iterator, Mapping, Sequence

import attrs
import torch

from specdec.assembly import build_strategies
from specdec.draft import Draft
from specdec.errors import ConfigurationError, InputError, VocabularyMismatchError
from specdec.exclusive import claimed
from specdec.generation_options import checked_seed, resolve_options
from specdec.integrations.base import (
    FeatureModel,
    GenerationDefaults,
    LanguageModel,
    ModelOutput,
    TextCodec,
    as_model,
    supports_tree,
)
from specdec.policy import LengthPolicy, ReferencePolicy, RoundState
from specdec.prompts import Prompt, prompt_ids
from specdec.proposer import ProposalRequest, Proposer
from specdec.samplers import Sampler, TorchSampler
from specdec.sequence_cache import SequenceCache
from specdec.stats import GenerationResult, StatsRecorder
from specdec.streaming import StreamerFeed, checked_streamer
from specdec.verification import TargetFeatures, Verification
from specdec.verifier import Verifier
from specdec.vocabulary import check_same_tokenizer


@attrs.define
class Decoder:
    """Speculative decoding with a pluggable proposer and length policy.

    `target` (and `draft`) may be a loaded model, a path, a cached hub id or a transformers
    `PreTrainedModel` (with `tokenizer=`, else the one its `name_or_path` names). `policy` and
    `proposer` are strategy objects or registered names, whose parameters go in `policy_params` /
    `proposer_params`; a proposer given by name that drafts with a model gets `draft`, and
    `draft=` alone means the `draft` proposer. `Decoder(target)` decodes with the target alone (the
    baseline), through the same loop and adapter. A Decoder, and each model, runs one generation at
    a time (`specdec.exclusive`): another at once raises `ConcurrentUseError`.
    """

    target: LanguageModel
    proposer: Proposer | str | None = None
    policy: LengthPolicy | str | None = None
    verifier: Verifier = attrs.field(factory=Verifier)
    codec: TextCodec | None = None
    draft: Any = attrs.field(default=None, kw_only=True, repr=False)
    tokenizer: Any = attrs.field(default=None, kw_only=True, repr=False)
    policy_params: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True, repr=False)
    proposer_params: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True, repr=False)
    _cache: SequenceCache = attrs.field(init=False, repr=False)
    last_result: GenerationResult | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self.target = as_model(self.target, self.tokenizer, require_tokenizer=True)
        self.policy, self.proposer = build_strategies(
            self.policy, self.proposer, draft=self.draft, target=self.target, policy_params=self.policy_params,
            proposer_params=self.proposer_params,
        )
        if self.codec is None:
            self.codec = self.target.codec
        if self.proposer is not None:
            vocab = self.proposer.vocab_size
            if vocab is not None and vocab != self.target.vocab_size:
                raise VocabularyMismatchError(
                    f"the proposer {self.proposer.name!r} drafts over {vocab} tokens but the target "
                    f"{self.target.name!r} has {self.target.vocab_size}; a draft model must share the target's tokenizer"
                )
            for model in self.proposer.models:
                check_same_tokenizer(self.target, model, self.target.vocab_size)
            if self.proposer.target_layers and not isinstance(self.target, FeatureModel):
                raise ConfigurationError(
                    f"the proposer {self.proposer.name!r} drafts from the target's hidden states, which the target "
                    f"{self.target.name!r} does not return (it is not a FeatureModel)"
                )
        self._cache = SequenceCache(self.target)

    # ------------------------------------------------------------------ public API
    def generate(self, prompt: Prompt | None = None, max_new_tokens: int | None = None, **kwargs: Any) -> GenerationResult:
        """Generate up to `max_new_tokens` tokens; the output is distributed exactly as the target's.

        `prompt` is text, chat messages or token ids (or `input_ids=`/`attention_mask=` as a
        tokenizer returns them). specdec's keywords: `temperature` (0, the default, is greedy),
        `top_k`, `top_p`, `seed` (None: drawn from torch's generator), `coupled` (the output is
        then token for token target-only sampling's with the same seed, `SamplingConfig`; None, the
        default, samples coupled exactly when a seed is given, so that a seed fixes the text), `stop`,
        `chat`, `sampler`.
        transformers' `generation_config=`, `do_sample`, `eos_token_id`, `stop_strings`, ... mean
        what they mean to `model.generate` (`specdec.generation_options`); `streamer=` receives
        the prompt, then the tokens as they are accepted.
        """
        run = self._run(prompt, max_new_tokens, **kwargs)
        for _ in run:
            pass
        return run.result

    def stream(self, prompt: Prompt | None = None, max_new_tokens: int | None = None, **kwargs: Any) -> Iterator[int]:
        """Yield token ids as soon as the verifier accepts them (the result is `last_result` after);
        takes `generate`'s arguments."""
        run = self._run(prompt, max_new_tokens, **kwargs)
        for tokens in run:
            yield from tokens

    def prepare(self, prompt: Prompt, max_new_tokens: int = 128, *, chat: bool = False) -> bool:
        """Give a policy that needs the target's greedy output of `prompt` (`ReferencePolicy`: the
        analysis-only oracle) that output, from one target-only run; returns whether it did."""
        if not isinstance(self.policy, ReferencePolicy):
            return False
        reference = Decoder(self.target, codec=self.codec).generate(prompt, max_new_tokens, chat=chat)
        self.policy.set_continuation(list(reference.prompt_ids) + list(reference.ids))
        return True

    def encode(self, prompt: Prompt | None = None, *, chat: bool = False, input_ids: Any = None, attention_mask: Any = None) -> list[int]:
        """The prompt's token ids (see `specdec.prompts`)."""
        return prompt_ids(self.codec, self.target.vocab_size, prompt, input_ids=input_ids, attention_mask=attention_mask, chat=chat)

    # ------------------------------------------------------------------ the loop
    def _run(
        self,
        prompt: Prompt | None,
        max_new_tokens: int | None,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        coupled: bool | None = None,
        stop: Sequence[str] = (),
        chat: bool = False,
        sampler: Sampler | None = None,
        input_ids: Any = None,
        attention_mask: Any = None,
        generation_config: Any = None,
        streamer: Any = None,
        **options: Any,
    ) -> "_Run":
        defaults = self.target.generation_config if isinstance(self.target, GenerationDefaults) else None
        coupled = seed is not None if coupled is None else coupled  # a seed fixes the text
        settings = resolve_options(
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, coupled=coupled, stop=stop,
            generation_config=generation_config, model_defaults=defaults, options=options,
        )
        feed = StreamerFeed(checked_streamer(streamer))
        ids = self.encode(prompt, chat=chat, input_ids=input_ids, attention_mask=attention_mask)
        requested = settings.new_tokens(len(ids))
        room = self._context_room(len(ids))
        if any(not s for s in settings.stop):
            raise InputError("stop strings must be non-empty")
        if settings.stop and self.codec is None:
            raise InputError("stop strings need a tokenizer")
        eos = self.target.eos_token_ids if settings.eos is None else settings.eos
        sampler = sampler or TorchSampler(checked_seed(seed))  # the one place a seed becomes a sampler
        return _Run(self, ids, min(requested, room), requested, settings.sampling, sampler, settings.stop, eos, feed)

    def _context_room(self, prompt_length: int) -> int:
        proposer_limit = self.proposer.max_length if self.proposer is not None else None
        limits = [m for m in (self.target.max_length, proposer_limit) if m is not None]
        limit = min(limits) if limits else None
        if limit is None:
            return 1 << 62
        if prompt_length >= limit:
            raise InputError(f"the prompt has {prompt_length} tokens but the context holds {limit}: nothing can be generated")
        return limit - prompt_length


def committed_features(out: ModelOutput, draft: Draft, verdict: Verification, context_length: int) -> TargetFeatures:
    """The rows of the target's hidden states at the positions the round fed and kept: the
    context it had not read, then the accepted path through the draft (and its branches)."""
    fed = int(out.features[0].shape[0])
    tail = fed - len(draft.tree)  # context tokens fed before the draft
    path = verdict.tree_path
    if path == tuple(range(len(path))):  # a leading run of draft nodes: a view, no copy
        layers = tuple(f[: tail + len(path)] for f in out.features)
    else:
        rows = torch.tensor(list(range(tail)) + [tail + node for node in path], dtype=torch.long)
        layers = tuple(f.index_select(0, rows.to(f.device)) for f in out.features)
    return TargetFeatures(context_length - tail, layers)


def _draft_seconds(proposer: Proposer | None) -> float:
    return proposer.forward_seconds if proposer is not None else 0.0


class _Run:
    """One generation: iterating yields the tokens emitted by each round; `.result` at the end."""

    def __init__(self, decoder: Decoder, prompt: list[int], limit: int, requested: int, sampling, sampler, stop, eos, feed) -> None:
        self.d = decoder
        self.prompt = prompt
        self.limit = limit
        self.requested = requested
        self.sampling = sampling
        self.sampler = sampler
        self.stop = stop
        self.eos = eos
        self.feed = feed
        self.context = list(prompt)
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[list[int]]:
        d = self.d
        with claimed(d, [d.target, *(d.proposer.models if d.proposer else ())]):  # one generation at a time on each
            yield from self._rounds()

    def _rounds(self) -> Iterator[list[int]]:
        d, sampling, sampler = self.d, self.sampling, self.sampler
        target, proposer, policy = d.target, d.proposer, d.policy
        eos = self.eos  # the target's end tokens, or this call's eos_token_id
        trees = supports_tree(target)
        layers = proposer.target_layers if proposer is not None else ()
        if layers:  # the proposer needs the target's states at every position: the prompt is read afresh
            d._cache.reset()
        else:
            d._cache.restart()
        sampler.begin()
        policy.start()
        if proposer is not None:
            proposer.start(self.prompt, sampling)
        rec = StatsRecorder(
            target.forwards, proposer.forwards if proposer else 0, target.tokens_processed,
            target.forward_seconds, _draft_seconds(proposer),
        )
        context, generated = self.context, 0
        self.feed.prompt(self.prompt)
        finish = "length" if self.limit == self.requested else "context"
        stop_window = max((len(s) for s in self.stop), default=0)
        while generated < self.limit:
            remaining = self.limit - generated
            t0 = time.perf_counter()
            draft = Draft(start=len(context))  # a plain target step
            budget = 0
            if proposer is not None and remaining > 1:
                state = RoundState(len(context), generated, remaining, proposer.pending(context))
                budget = min(policy.begin_round(state), remaining - 1)
            if budget > 0:
                request = ProposalRequest(context, budget, policy, sampling, sampler, eos, remaining - 1 if trees else 0)
                draft = proposer.propose(request)
                self._check_draft(draft, budget, request.tree_depth)
                if draft.start != len(context):  # a draft built without the request: its draws' keys need it
                    draft = attrs.evolve(draft, start=len(context))
            t1 = time.perf_counter()
            if draft.branches:  # the draft and its branches as one token tree, in the same forward
                tree = draft.tree
                out = d._cache.sync(context, tree=(tree.tokens, tree.parents), keep=len(tree) + 1, features=layers)
            else:
                out = d._cache.sync(context, draft.tokens, keep=len(draft) + 1, features=layers)
            verdict = d.verifier.verify(draft, out.logits, sampling, sampler, eos)
            t2 = time.perf_counter()
            verdict = attrs.evolve(
                verdict, draft_seconds=t1 - t0, verify_seconds=t2 - t1, context_length=len(context), draft_forwards=draft.forwards,
                target_features=committed_features(out, draft, verdict, len(context)) if layers else None,
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
            self.feed.tokens(emitted)
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
        self.feed.end()

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
