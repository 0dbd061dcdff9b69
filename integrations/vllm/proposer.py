"""The proposer vLLM builds for `method: custom_class`: specdec's policies and proposers, per request.

vLLM calls `propose` once per engine step with one row per running request. Each request gets its
own specdec policy and proposer (built through the registry when the request first appears, with
its own row of the draft model), so they run exactly as in specdec's own loop, one round per step:

1. the tokens vLLM just emitted for the row are the verdict on the draft sent last step: the
   leading ones that equal the draft were accepted, the last is the correction or bonus token
   (vLLM's rejection sampler decided; this only reads what it decided). That `Verification` goes
   to the request's policy and proposer;
2. the policy caps the next draft (0 is allowed: the row is then a plain target step) and the
   proposer drafts through a `ProposalRequest`, as in `specdec.Decoder`; the requests that draft
   with the draft model share its forwards, one per step (`specdec.stepping`), as a batch in
   specdec's own loop does.

A request's state is dropped as soon as its tokens end it for certain (a stop token, its
`max_tokens`, the model's length: the rules of vLLM's scheduler), in the step that emitted them;
an end vLLM decides elsewhere (a stop string, an abort) reaches `finish` from the engine core as
soon as vLLM aborts the request, before its next step (see `patch`). So the draft's cache is freed
at once, and an idle engine holds nothing. A wrong guess would cost only the request's learned
state: a request seen again starts afresh from its tokens, and vLLM verifies every draft whatever
the proposer knows.

Ouroboros runs without branches (`tree_depth=0`): vLLM verifies one chain per request, so it
drafts and copies as usual and attaches none.

Drafts are always greedy (argmax or deterministic copies). vLLM verifies custom drafts as
deterministic proposals (one-hot q): it accepts token x with the target's p(x) and otherwise draws
from p without x, a draw from p whatever x is, so the output is exact at every temperature for
any draft (a sampled one too). The draft decides only how often it is accepted: where draft and
target agree, the draft's most likely token is accepted more often than a sample of its
distribution would be (vLLM never sees that q). vLLM does not show a custom proposer the target's
logits, so `Verification.target_argmax` stays empty.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar, Sequence

import attrs

from specdec.errors import ConfigurationError, VocabularyMismatchError
from specdec.assembly import draft_row
from specdec.draft import Draft
from specdec.integrations.base import BatchModel, LanguageModel, as_model
from specdec.policy import LengthPolicy, RoundState
from specdec.proposer import DraftSteps, ProposalRequest, Proposer
from specdec.stepping import draft_together, proposal_steps
from specdec.samplers import TorchSampler
from specdec.sampling import SamplingConfig
from specdec.verification import Verification

from . import patch
from .options import VllmOptions

GREEDY = SamplingConfig()  # drafts are argmax or copies whatever the request's temperature (see above)


@attrs.define
class RequestState:
    """One request's strategies and the round in flight."""

    policy: LengthPolicy
    proposer: Proposer
    prompt_length: int
    context: list[int]
    row: int | None = None  # its row of the draft model, when the draft holds rows (`BatchModel`)
    draft: tuple[int, ...] | None = None  # sent last step, awaiting vLLM's verdict
    draft_forwards: int = 0
    draft_seconds: float = 0.0


@attrs.define
class Totals:
    """What the proposer did since the engine started, as specdec counted it (read them with
    `engine_stats`): rounds fed back, tokens drafted and accepted, requests begun and finished
    (and begun per variant)."""

    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    requests_started: int = 0
    requests_finished: int = 0
    live_requests: int = 0
    draft_seconds: float = 0.0
    started_by_variant: dict[str, int] = attrs.field(factory=dict)  # "" for the engine's own strategies


class SpecdecProposer:
    """vLLM's custom proposer running specdec strategies; `configured` binds `options` per engine."""

    options: ClassVar[VllmOptions]
    wants_batch_rows = True  # asks `patch` for the request ids of the rows

    def __init__(self, vllm_config: Any) -> None:
        patch.apply()
        spec = vllm_config.speculative_config
        self.k = int(spec.num_speculative_tokens)
        if self.k < self.options.num_speculative_tokens:
            raise ConfigurationError(
                f"num_speculative_tokens is {self.k} but specdec's options were made for {self.options.num_speculative_tokens}: "
                "change both through speculative_config()"
            )
        model_config = vllm_config.model_config
        self.max_model_len = int(model_config.max_model_len)
        self.vocab_size = int(model_config.get_vocab_size())
        self.eos_token_ids = _eos_ids(model_config.hf_config)
        self.batch_rows: patch.BatchRows | None = None
        self.requests: dict[str, RequestState] = {}
        self.totals = Totals()
        self._draft_model: LanguageModel | None = None
        self._free_rows: list[int] = []  # rows of the draft model that finished requests left
        self._rows = 0  # rows of the draft model handed out so far
        self._step_end: float | None = None
        from specdec.plugins import registry

        reg = registry()
        self._strategies = {  # None: the engine's own; else the variants requests may select
            name: (strategies, reg.get("policy", strategies.policy), reg.get("proposer", strategies.proposer))
            for name, strategies in [(None, self.options.strategies()), *self.options.variants.items()]
        }
        self._unknown_variants: set[str] = set()

    def load_model(self, target_model: Any = None) -> None:
        """Load the draft model once (per-request handles share its weights)."""
        if self.options.draft is None:
            return
        draft = as_model(self.options.draft, require_tokenizer=False)
        if draft.vocab_size > self.vocab_size:
            raise VocabularyMismatchError(
                f"the draft {self.options.draft!r} has {draft.vocab_size} tokens but the target {self.vocab_size}: "
                "a draft model must share the target's tokenizer"
            )
        self._draft_model = draft

    # ------------------------------------------------------------------ per request
    def _variant(self, name: str | None) -> str | None:
        """The variant a request named (None: the engine's own); an unknown name runs the engine's
        own strategies, with one warning per name (a request cannot be refused from here)."""
        if name is None or name in self._strategies:
            return name
        if name not in self._unknown_variants:
            self._unknown_variants.add(name)
            known = ", ".join(repr(n) for n in self._strategies if n is not None) or "none"
            logging.getLogger("specdec").warning("a request selects specdec variant %r, which this engine lacks (it has %s): it runs the engine's own strategies", name, known)
        return None

    def _begin(self, req_id: str, context: list[int], prompt_length: int, variant: str | None = None) -> RequestState:
        row = self._take_row() if isinstance(self._draft_model, BatchModel) else None
        resources = {} if self._draft_model is None else {"model": draft_row(self._draft_model, 0 if row is None else row)}
        variant = self._variant(variant)
        strategies, policy_entry, proposer_entry = self._strategies[variant]
        policy = policy_entry.build(strategies.policy_params, **resources)
        proposer = proposer_entry.build(strategies.proposer_params, **resources)
        policy.start()
        proposer.start(context[:prompt_length], GREEDY)
        state = RequestState(policy, proposer, prompt_length, context, row)
        self.requests[req_id] = state
        self.totals.requests_started += 1
        self.totals.started_by_variant[variant or ""] = self.totals.started_by_variant.get(variant or "", 0) + 1
        self.totals.live_requests = len(self.requests)
        return state

    def finish(self, req_ids: Sequence[str]) -> None:
        """Drop the state of requests vLLM finished or aborted (called by `patch`; a request
        `_ended` already dropped is not counted twice)."""
        for req_id in req_ids:
            state = self.requests.pop(req_id, None)
            if state is not None:
                self.totals.requests_finished += 1
                if state.row is not None:
                    self._free_rows.append(state.row)
        self.totals.live_requests = len(self.requests)

    def _take_row(self) -> int:
        """A row of the draft model for a new request: one a finished request left, else a new one."""
        if self._free_rows:
            return self._free_rows.pop()
        self._rows += 1
        return self._rows - 1

    def _ended(self, state: RequestState, sampled: Sequence[int], stop_tokens: frozenset[int], max_tokens: int | None) -> bool:
        """Whether the tokens vLLM just emitted end the request for certain (see the module docstring)."""
        generated = len(state.context) - state.prompt_length
        return (
            any(t in stop_tokens for t in sampled)
            or (max_tokens is not None and generated >= max_tokens)
            or len(state.context) >= self.max_model_len
        )

    def _feed_back(self, state: RequestState, sampled: Sequence[int], verify_seconds: float) -> None:
        """The verdict on the last draft, read from the tokens vLLM emitted for it."""
        draft = state.draft or ()
        accepted = 0
        while accepted < min(len(draft), len(sampled) - 1) and sampled[accepted] == draft[accepted]:
            accepted += 1
        verdict = Verification(
            drafted=len(draft),
            accepted=accepted,
            tokens=tuple(sampled),
            eos=sampled[-1] in self.eos_token_ids,
            draft_seconds=state.draft_seconds,
            verify_seconds=verify_seconds,
            context_length=len(state.context) - len(sampled),
            draft_forwards=state.draft_forwards,
        )
        state.policy.observe(verdict)
        state.proposer.observe(verdict)
        self.totals.rounds += 1
        self.totals.drafted += len(draft)
        self.totals.accepted += accepted

    def _drafting(self, state: RequestState, max_tokens: int | None) -> DraftSteps:
        """One round's draft for one request (possibly empty), one draft forward at a time: the
        requests' steps share draft forwards (`specdec.stepping`)."""
        context = state.context
        generated = len(context) - state.prompt_length
        remaining = (max_tokens - generated) if max_tokens is not None else self.max_model_len - len(context)
        remaining = min(remaining, self.max_model_len - len(context))
        budget = 0
        if remaining > 1:
            round_state = RoundState(len(context), generated, remaining, state.proposer.pending(context))
            budget = min(state.policy.begin_round(round_state), remaining - 1, self.k)
        if budget <= 0:
            return Draft()
        request = ProposalRequest(context, budget, state.policy, GREEDY, TorchSampler(0), self.eos_token_ids, tree_depth=0)
        draft = yield from proposal_steps(state.proposer, request)
        if len(draft) > budget or draft.branches or any(not 0 <= t < self.vocab_size for t in draft.tokens):
            raise ConfigurationError(
                f"the proposer {state.proposer.name!r} returned a draft vLLM cannot verify: at most {budget} tokens "
                f"below {self.vocab_size}, no branches; got {len(draft)} tokens and {len(draft.branches)} branches"
            )
        return draft

    def _draft_all(self, states: Sequence[RequestState], max_tokens: Sequence[int | None]) -> list[list[int]]:
        """Each request's draft, their draft-model forwards shared step by step."""
        drafted = draft_together([self._drafting(state, limit) for state, limit in zip(states, max_tokens)])
        for state, (draft, seconds) in zip(states, drafted):
            state.draft, state.draft_forwards, state.draft_seconds = draft.tokens, draft.forwards, seconds
            self.totals.draft_seconds += seconds
        return [list(draft.tokens) for draft, _ in drafted]

    # ------------------------------------------------------------------ vLLM's call
    def propose(
        self,
        sampled_token_ids: list[list[int]],
        num_tokens_no_spec: Any,
        token_ids_cpu: Any,
        slot_mappings: Any = None,
        **_: Any,
    ) -> list[list[int]]:
        """One draft per row (ragged: each row's own length, 0 allowed)."""
        now = time.perf_counter()
        step_seconds = now - self._step_end if self._step_end is not None else 0.0
        rows = self.batch_rows
        if rows is None or len(rows.req_ids) < len(sampled_token_ids):
            raise ConfigurationError("vLLM called the specdec proposer without the request ids of its rows: the runner patch is not in place")
        drafts: list[list[int]] = []
        drafting: list[tuple[int, RequestState, int | None]] = []  # (row, state, max_tokens) of the rows that draft
        for i, sampled in enumerate(sampled_token_ids):
            req_id = rows.req_ids[i]
            if not sampled:  # a prompt still being read in chunks: nothing to verify or draft yet
                drafts.append([])
                continue
            sampled = [int(t) for t in sampled]
            length = int(num_tokens_no_spec[i])
            state = self.requests.get(req_id)
            if state is None:
                context = token_ids_cpu[i, :length].tolist()
                prompt_length = rows.prompt_length(req_id) or length - len(sampled)
                state = self._begin(req_id, context, prompt_length, rows.variant(req_id))
            else:
                state.context.extend(sampled)
                if len(state.context) != length:  # resumed after preemption, or out of step: re-read the row
                    state.context[:] = token_ids_cpu[i, :length].tolist()
                if state.draft is not None:
                    self._feed_back(state, sampled, step_seconds)
            max_tokens = rows.max_tokens(req_id)
            if self._ended(state, sampled, rows.stop_token_ids(req_id), max_tokens):
                self.finish([req_id])
                drafts.append([])
                continue
            drafting.append((i, state, max_tokens))
            drafts.append([])
        if drafting:
            made = self._draft_all([state for _, state, _ in drafting], [limit for _, _, limit in drafting])
            for (i, _, _), draft in zip(drafting, made):
                drafts[i] = draft
        self.batch_rows = None
        self._step_end = time.perf_counter()
        return drafts

    def stats(self) -> dict[str, Any]:
        """`Totals` as a dict (what `engine_stats` returns)."""
        return attrs.asdict(self.totals)


def _eos_ids(hf_config: Any) -> frozenset[int]:
    eos = getattr(hf_config, "eos_token_id", None)
    if eos is None:
        return frozenset()
    return frozenset(int(t) for t in (eos if isinstance(eos, (list, tuple)) else [eos]))

