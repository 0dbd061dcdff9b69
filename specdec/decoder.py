"""The decoder: speculative generation with a pluggable proposer and length policy.

The loop itself (propose, verify in one target forward, emit, adapt; one sequence or a batch of
them) is `specdec.rounds`; this module turns a call's arguments into prompts, settings and the
strategies and caches each sequence runs with.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import attrs

from specdec.assembly import StrategyRecipe, strategy_recipe
from specdec.batching import check_batch_call, per_prompt_limits, per_prompt_samplers, rows_in_flight
from specdec.errors import ConfigurationError, InputError, VocabularyMismatchError
from specdec.generation_options import checked_seed, resolve_options
from specdec.integrations.base import (
    BatchModel,
    FeatureModel,
    GenerationDefaults,
    LanguageModel,
    TextCodec,
    as_model,
)
from specdec.integrations.rows import ModelRow
from specdec.policy import LengthPolicy, ReferencePolicy
from specdec.prompts import Prompt, batch_prompts, is_batch, prompt_ids
from specdec.proposer import Proposer
from specdec.rounds import CallSettings, Job, Rounds, Slot
from specdec.samplers import Sampler, TorchSampler
from specdec.sequence_cache import SequenceCache
from specdec.stats import GenerationResult
from specdec.streaming import StreamerFeed, checked_streamer
from specdec.verifier import Verifier
from specdec.vocabulary import check_same_tokenizer

Strategies = tuple[LengthPolicy, "Proposer | None"]


@attrs.define
class Decoder:
    """Speculative decoding with a pluggable proposer and length policy.

    `target` (and `draft`) may be a loaded model, a path, a cached hub id or a transformers
    `PreTrainedModel` (with `tokenizer=`, else the one its `name_or_path` names). `policy` and
    `proposer` are strategy objects or registered names, whose parameters go in `policy_params` /
    `proposer_params`; a proposer given by name that drafts with a model gets `draft`, and
    `draft=` alone means the `draft` proposer. `Decoder(target)` decodes with the target alone (the
    baseline), through the same loop and adapter. `strategies=`, a function returning a fresh
    (policy, proposer), replaces `policy` and `proposer` where a batch needs strategy objects (one
    set per row; names need none). A Decoder, and each model, runs one generation at a time
    (`specdec.exclusive`): another at once raises `ConcurrentUseError`.
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
    strategies: Callable[[], Strategies] | None = attrs.field(default=None, kw_only=True, repr=False)
    _cache: SequenceCache = attrs.field(init=False, repr=False)
    _recipe: StrategyRecipe = attrs.field(init=False, repr=False)
    _row_strategies: list[Strategies] = attrs.field(init=False, factory=list, repr=False)  # the slots of a batch
    last_result: GenerationResult | None = attrs.field(init=False, default=None, repr=False)
    last_results: list[GenerationResult] | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self.target = as_model(self.target, self.tokenizer, require_tokenizer=True)
        self._recipe = strategy_recipe(
            self.policy, self.proposer, draft=self.draft, target=self.target, policy_params=self.policy_params,
            proposer_params=self.proposer_params, factory=self.strategies,
        )
        self.policy, self.proposer = self._recipe.build()
        if self.codec is None:
            self.codec = self.target.codec
        self._check_proposer(self.proposer)
        self._cache = SequenceCache(self.target)

    def _check_proposer(self, proposer: Proposer | None) -> None:
        if proposer is None:
            return
        vocab = proposer.vocab_size
        if vocab is not None and vocab != self.target.vocab_size:
            raise VocabularyMismatchError(
                f"the proposer {proposer.name!r} drafts over {vocab} tokens but the target "
                f"{self.target.name!r} has {self.target.vocab_size}; a draft model must share the target's tokenizer"
            )
        for model in proposer.models:
            check_same_tokenizer(self.target, model, self.target.vocab_size)
        if proposer.target_layers and not isinstance(self.target, FeatureModel):
            raise ConfigurationError(
                f"the proposer {proposer.name!r} drafts from the target's hidden states, which the target "
                f"{self.target.name!r} does not return (it is not a FeatureModel)"
            )

    # ------------------------------------------------------------------ public API
    def generate(
        self, prompt: Prompt | list[Prompt] | None = None, max_new_tokens: int | Sequence[int] | None = None, **kwargs: Any
    ) -> GenerationResult | list[GenerationResult]:
        """Generate up to `max_new_tokens` tokens; the output is distributed exactly as the target's.

        `prompt` is text, chat messages or token ids (or `input_ids=`/`attention_mask=` as a
        tokenizer returns them), or a list of prompts: then the result is a list of one
        `GenerationResult` per prompt, in order, each exactly what decoding that prompt alone gives
        (with a seed, prompt i samples as sequence i of it), and `max_new_tokens` may be a list of
        one per prompt. Up to `batch_size=` prompts decode at once, their target verifications in
        one forward; a waiting prompt takes the row of one that finished. specdec's keywords:
        `temperature` (0, the default, is greedy), `top_k`, `top_p`, `seed` (None: drawn from
        torch's generator), `coupled` (the output is then token for token target-only sampling's
        with the same seed, `SamplingConfig`; None, the default, samples coupled exactly when a
        seed is given, so that a seed fixes the text), `stop`, `chat`, `sampler` (a list of one per
        prompt for a batch).
        transformers' `generation_config=`, `do_sample`, `eos_token_id`, `stop_strings`, ... mean
        what they mean to `model.generate` (`specdec.generation_options`); `streamer=` receives
        the prompt, then the tokens as they are accepted.
        """
        run = self._run(prompt, max_new_tokens, **kwargs)
        for _ in run:
            pass
        return self._results(prompt, run)

    def stream(self, prompt: Prompt | list[Prompt] | None = None, max_new_tokens: int | Sequence[int] | None = None, **kwargs: Any) -> Iterator[Any]:
        """Yield token ids as soon as the verifier accepts them (the result is `last_result` after);
        for a list of prompts, (prompt index, tokens) as each row advances (the results are
        `last_results` after). Takes `generate`'s arguments."""
        run = self._run(prompt, max_new_tokens, **kwargs)
        if is_batch(prompt):
            for index, tokens in run:
                if tokens:
                    yield index, tokens
        else:
            for _, tokens in run:
                yield from tokens
        self._results(prompt, run)

    def _results(self, prompt: Any, run: Rounds) -> GenerationResult | list[GenerationResult]:
        results = list(run.results)
        self.last_result = results[-1]
        if is_batch(prompt):
            self.last_results = results
            return results
        return results[0]

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

    # ------------------------------------------------------------------ a call
    def _run(
        self,
        prompt: Any,
        max_new_tokens: Any,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        coupled: bool | None = None,
        stop: Sequence[str] = (),
        chat: bool = False,
        sampler: Sampler | Sequence[Sampler] | None = None,
        input_ids: Any = None,
        attention_mask: Any = None,
        generation_config: Any = None,
        streamer: Any = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> Rounds:
        batch = is_batch(prompt)
        if batch:
            check_batch_call(streamer, input_ids, attention_mask)
        prompts = batch_prompts(prompt) if batch else [prompt]
        defaults = self.target.generation_config if isinstance(self.target, GenerationDefaults) else None
        coupled = seed is not None if coupled is None else coupled  # a seed fixes the text
        settings = [
            resolve_options(
                max_new_tokens=limit, temperature=temperature, top_k=top_k, top_p=top_p, coupled=coupled, stop=stop,
                generation_config=generation_config, model_defaults=defaults, options=dict(options),
            )
            for limit in (per_prompt_limits(max_new_tokens, len(prompts)) if batch else [max_new_tokens])
        ]
        feed = StreamerFeed(checked_streamer(streamer))
        rows = rows_in_flight(batch_size, len(prompts), isinstance(self.target, BatchModel), self.target.name)
        if batch:
            samplers = per_prompt_samplers(sampler, checked_seed(seed), len(prompts), settings[0].sampling.greedy)
        else:
            samplers = [sampler or TorchSampler(checked_seed(seed))]  # the one place a seed becomes a sampler
        jobs = []
        for index, (text, setting, row_sampler) in enumerate(zip(prompts, settings, samplers)):
            ids = self._prompt_ids(text, index if batch else None, chat, input_ids, attention_mask)
            requested = setting.new_tokens(len(ids))
            jobs.append(Job(index, ids, min(requested, self._context_room(len(ids))), requested, row_sampler))
        first = settings[0]
        if any(not s for s in first.stop):
            raise InputError("stop strings must be non-empty")
        if first.stop and self.codec is None:
            raise InputError("stop strings need a tokenizer")
        eos = self.target.eos_token_ids if first.eos is None else first.eos
        call = CallSettings(first.sampling, first.stop, eos, feed)
        if rows == 1:
            return Rounds(self, [Slot(self.policy, self.proposer, self._cache, self.target)], jobs, call, None)
        return Rounds(self, self._slots(rows), jobs, call, self.target)

    def _prompt_ids(self, prompt: Any, index: int | None, chat: bool, input_ids: Any, attention_mask: Any) -> list[int]:
        if index is None:
            return self.encode(prompt, chat=chat, input_ids=input_ids, attention_mask=attention_mask)
        try:
            return self.encode(prompt, chat=chat)
        except InputError as error:
            raise InputError(f"prompt {index} of the list: {error}") from None

    def _slots(self, rows: int) -> list[Slot]:
        """The rows of a batch: strategies built from the decoder's recipe for each (kept for later
        calls; a draft model goes to row i as its row i), each row a cache of its own on the target."""
        if not self._recipe.can_rebuild:
            raise ConfigurationError(
                "a batch runs a policy and proposer per row: give them by name (policy='svip', proposer='draft', with "
                "policy_params= / proposer_params=), or pass strategies=, a function returning a fresh (policy, proposer)"
            )
        while len(self._row_strategies) < rows:
            policy, proposer = self._recipe.build(row=len(self._row_strategies))
            self._check_proposer(proposer)
            self._row_strategies.append((policy, proposer))
        slots = []
        for index, (policy, proposer) in enumerate(self._row_strategies[:rows]):
            row = ModelRow(self.target, index)
            slots.append(Slot(policy, proposer, SequenceCache(row), row, row))
        return slots

    def _context_room(self, prompt_length: int) -> int:
        proposer_limit = self.proposer.max_length if self.proposer is not None else None
        limits = [m for m in (self.target.max_length, proposer_limit) if m is not None]
        limit = min(limits) if limits else None
        if limit is None:
            return 1 << 62
        if prompt_length >= limit:
            raise InputError(f"the prompt has {prompt_length} tokens but the context holds {limit}: nothing can be generated")
        return limit - prompt_length


