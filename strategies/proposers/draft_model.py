"""A small draft model proposes tokens autoregressively (standard speculative decoding)."""

from __future__ import annotations

from typing import Sequence

import attrs
import torch

from specdec.draft import Draft
from specdec.errors import ConfigurationError
from specdec.integrations.base import LanguageModel, ReducibleModel, as_model
from specdec.policy import boolean, optional_positive_int
from specdec.proposer import DraftSteps, ModelCounters, ProposalRequest, run_alone
from specdec.sampling import SamplingConfig
from specdec.sequence_cache import Feed, SequenceCache
from specdec.verification import Verification

from .frequent_tokens import frequent_tokens


@attrs.define
class DraftModelProposer(ModelCounters):
    """Draft with a smaller model of the same vocabulary.

    Greedy: the draft proposes its argmax (a deterministic proposal). Sampling: it samples from
    q = warp(draft logits) with the same temperature/top-k/top-p as the target and returns q, so
    the verifier can apply the p/q rule exactly. The KV cache is kept across rounds and cropped
    to the accepted prefix.

    `head_tokens=N` scores only the N most frequent tokens in the draft's LM head (FR-Spec's idea;
    the head is most of a small draft's cost): drafts come from that subset, q is 0 elsewhere and
    the output stays exact. `int8=True` runs the draft's linear layers in int8 (about twice as
    fast on a CPU; `HFModel.quantized`): its proposals change a little, the output does not. Both
    need a transformers draft. `context_window=N` lets the draft read only the last N prompt tokens
    (and everything generated after them): on a long prompt the draft's own prefill is then cheap,
    so speculation can start at once; its proposals may get worse, the output cannot.
    """

    name = "draft"
    model: LanguageModel = attrs.field(converter=as_model)
    head_tokens: int | None = attrs.field(default=None, kw_only=True, validator=optional_positive_int)
    int8: bool = attrs.field(default=False, kw_only=True, validator=boolean)
    context_window: int | None = attrs.field(default=None, kw_only=True, validator=optional_positive_int)
    _cache: SequenceCache = attrs.field(init=False)
    _offset: int = attrs.field(init=False, default=0)  # context tokens the draft does not read

    def __attrs_post_init__(self) -> None:
        self.model = cheaper_draft(self.model, self.head_tokens, self.int8)
        self._cache = SequenceCache(self.model)

    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        self._cache.restart()
        self._offset = max(len(prompt) - self.context_window, 0) if self.context_window else 0

    def pending(self, context: Sequence[int]) -> int:
        return self._cache.unread(self._view(context))

    def propose(self, request: ProposalRequest) -> Draft:
        return run_alone(self.drafting(request))

    def drafting(self, request: ProposalRequest) -> DraftSteps:
        """One draft forward per token: the unread context tail first, then each drawn token."""
        if not request.may_forward():
            return request.draft()
        hidden = request.wants_hidden
        out = yield Feed(self._cache, self._view(request.context), hidden=hidden)
        while request.draw(out.logits[-1], _last(out.hidden), who=f"the draft model {self.model.name!r}"):
            if not request.may_forward():
                break
            out = yield Feed(self._cache, None, [request.tokens[-1]], hidden=hidden)
        return request.draft()

    def _view(self, context: Sequence[int]) -> Sequence[int]:
        """The part of the context the draft reads (see `context_window`)."""
        return TailView(context, self._offset) if self._offset else context

    def observe(self, verification: Verification) -> None:
        pass


def _last(hidden: torch.Tensor | None) -> torch.Tensor | None:
    return None if hidden is None else hidden[-1]


class TailView(Sequence[int]):
    """`tokens[offset:]` without copying (the context grows every round; a copy would cost a
    prompt's length per round)."""

    def __init__(self, tokens: Sequence[int], offset: int) -> None:
        self.tokens, self.offset = tokens, offset

    def __len__(self) -> int:
        return max(len(self.tokens) - self.offset, 0)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            return self.tokens[self.offset + start : self.offset + stop : step]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.tokens[self.offset + index]


def cheaper_draft(model: LanguageModel, head_tokens: int | None, int8: bool) -> LanguageModel:
    """The draft with its LM head trimmed to the `head_tokens` most frequent tokens and/or int8 layers."""
    wants_head = head_tokens is not None and head_tokens < model.vocab_size
    if (wants_head or int8) and not isinstance(model, ReducibleModel):
        what = "head_tokens" if wants_head else "int8"
        raise ConfigurationError(f"{what} needs a transformers draft model (one that can trim its head and quantize); {model!r} cannot")
    if wants_head:
        model = model.with_head_subset(frequent_tokens(model.vocab_size, head_tokens, model.eos_token_ids))
    if int8:
        model = model.quantized()
    return model
