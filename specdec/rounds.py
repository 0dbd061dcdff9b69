"""The speculative loop over one sequence or a batch: propose, verify in one target forward, emit, adapt.

One round, for every sequence in flight:
  1. the policy caps the draft length (0 = a plain target step);
  2. the proposer drafts, asking the policy after every candidate token (in a batch, the draft
     forwards of all sequences still drafting run as one forward per step: `specdec.stepping`);
  3. ONE target forward over each sequence's uncached context tail plus its draft gives p for
     every position (a batch feeds all its rows, ragged, in that one forward: `feed_rows`);
  4. the verifier keeps a prefix and adds the correction or bonus token, per sequence;
  5. policy and proposer observe the verdict; caches are cropped lazily at the next sync.
Target-only decoding is the same loop with no proposer (every round drafts nothing).

A batch runs its prompts in slots (rows of the target): each slot has its own policy, proposer
and cache, and a waiting prompt takes the slot of one that finished (continuous batching). A
sequence depends on its own prompt, strategies and sampler only, so its output is what decoding
it alone gives.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Iterator, Sequence

import attrs
import torch

from specdec.draft import Draft
from specdec.errors import ConfigurationError
from specdec.exclusive import claimed
from specdec.integrations.base import BatchModel, LanguageModel, ModelOutput, supports_tree
from specdec.integrations.rows import ModelRow
from specdec.policy import LengthPolicy, RoundState
from specdec.proposer import DraftSteps, ProposalRequest, Proposer
from specdec.samplers import Sampler
from specdec.sampling import SamplingConfig
from specdec.sequence_cache import Feed, SequenceCache, feed_rows
from specdec.stats import GenerationResult, StatsRecorder
from specdec.stepping import draft_together, proposal_steps
from specdec.streaming import StreamerFeed
from specdec.verification import TargetFeatures, Verification

if TYPE_CHECKING:
    from specdec.decoder import Decoder


@attrs.frozen
class Job:
    """One prompt of a call: its place in the call, ids, token limits and sampler."""

    index: int
    prompt: list[int]
    limit: int  # tokens it may generate (the context's room counted)
    requested: int  # tokens the call asked for
    sampler: Sampler


@attrs.frozen
class CallSettings:
    """What every prompt of a call shares."""

    sampling: SamplingConfig
    stop: tuple[str, ...]
    eos: frozenset[int]
    feed: StreamerFeed


@attrs.define(eq=False)  # slots are told apart by identity
class Slot:
    """A row of the target: the strategies and the cache that the prompts decoded in it use in turn."""

    policy: LengthPolicy
    proposer: Proposer | None
    cache: SequenceCache
    model: LanguageModel  # the target as this slot sees it: its counters are the slot's statistics
    row: ModelRow | None = None  # in a batch: the slot's row of the target


class Rounds:
    """A call's generation: iterating yields (prompt index, tokens emitted) after each sequence's
    round; `results` holds one `GenerationResult` per prompt, in order, at the end."""

    def __init__(self, decoder: "Decoder", slots: Sequence[Slot], jobs: Sequence[Job], call: CallSettings, batch: BatchModel | None) -> None:
        self.d = decoder
        self.slots = list(slots)
        self.jobs = list(jobs)
        self.call = call
        self.batch = batch
        self.results: list[GenerationResult | None] = [None] * len(self.jobs)

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        d = self.d
        models = [m for slot in self.slots if slot.proposer is not None for m in slot.proposer.models]
        with claimed(d, [d.target, *models]):  # one generation at a time on each
            yield from self._rounds()

    def _rounds(self) -> Iterator[tuple[int, list[int]]]:
        waiting = deque(self.jobs)
        free = list(self.slots)
        active: list[_Sequence] = []
        while waiting or active:
            while waiting and free:
                active.append(_Sequence(self.d, free.pop(0), waiting.popleft(), self.call))
            drafted = draft_together([sequence.drafting(stepwise=self.batch is not None) for sequence in active])
            drafts = [draft for draft, _ in drafted]
            outs, charges = self._verify_forward(active, drafts)
            for sequence, (draft, draft_seconds), out, forward_seconds in zip(active, drafted, outs, charges):
                yield sequence.job.index, sequence.conclude(draft, out, draft_seconds, forward_seconds)
            for sequence in [s for s in active if s.finish is not None]:
                active.remove(sequence)
                self.results[sequence.job.index] = sequence.result()
                free.append(sequence.slot)
            free.sort(key=self.slots.index)

    def _verify_forward(self, active: Sequence["_Sequence"], drafts: Sequence[Draft]) -> tuple[list[ModelOutput], list[float]]:
        """Each sequence's target outputs over its draft, one forward for all of them, and each
        sequence's share of its seconds (`feed_rows`)."""
        layers = active[0].layers
        feeds = []
        for sequence, draft in zip(active, drafts):
            if draft.branches:  # the draft and its branches as one token tree, in the same forward
                tree = draft.tree
                feeds.append(Feed(sequence.slot.cache, sequence.context, keep=len(tree) + 1, tree=(tree.tokens, tree.parents)))
            else:
                feeds.append(Feed(sequence.slot.cache, sequence.context, draft.tokens, keep=len(draft) + 1))
        return feed_rows(self.batch, feeds, layers)


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


class _Sequence:
    """One prompt being decoded in a slot: its context, statistics and end."""

    def __init__(self, decoder: "Decoder", slot: Slot, job: Job, call: CallSettings) -> None:
        self.d, self.slot, self.job, self.call = decoder, slot, job, call
        self.context = list(job.prompt)
        self.generated = 0
        self.finish: str | None = None
        self.trees = supports_tree(decoder.target)
        proposer, model = slot.proposer, slot.model
        self.layers = proposer.target_layers if proposer is not None else ()
        if self.layers:  # the proposer needs the target's states at every position: the prompt is read afresh
            slot.cache.reset()
        else:
            slot.cache.restart()
        job.sampler.begin()
        slot.policy.start()
        if proposer is not None:
            proposer.start(job.prompt, call.sampling)
        self.rec = StatsRecorder(
            model.forwards, proposer.forwards if proposer else 0, model.tokens_processed, model.forward_seconds, _draft_seconds(proposer),
        )
        self.ended_by = "length" if job.limit == job.requested else "context"
        self.stop_window = max((len(s) for s in call.stop), default=0)
        call.feed.prompt(job.prompt)

    def drafting(self, stepwise: bool) -> DraftSteps:
        """This round's draft (empty: a plain target step); `stepwise` (in a batch), one draft forward
        at a time from a `SteppedProposer`, so that the rows' forwards join; alone, by `propose`."""
        slot, context, sampling = self.slot, self.context, self.call.sampling
        proposer, policy = slot.proposer, slot.policy
        remaining = self.job.limit - self.generated
        draft = Draft(start=len(context))  # a plain target step
        budget = 0
        if proposer is not None and remaining > 1:
            state = RoundState(len(context), self.generated, remaining, proposer.pending(context))
            budget = min(policy.begin_round(state), remaining - 1)
        if budget > 0:
            request = ProposalRequest(context, budget, policy, sampling, self.job.sampler, self.call.eos, remaining - 1 if self.trees else 0)
            draft = yield from proposal_steps(proposer, request, stepwise)
            self._check_draft(draft, budget, request.tree_depth)
            if draft.start != len(context):  # a draft built without the request: its draws' keys need it
                draft = attrs.evolve(draft, start=len(context))
        return draft

    def conclude(self, draft: Draft, out: ModelOutput, draft_seconds: float, forward_seconds: float) -> list[int]:
        """Verify the draft on the target's outputs, let the strategies observe, emit."""
        slot, context, rec = self.slot, self.context, self.rec
        started = time.perf_counter()
        verdict = self.d.verifier.verify(draft, out.logits, self.call.sampling, self.job.sampler, self.call.eos)
        verify_seconds = forward_seconds + time.perf_counter() - started
        verdict = attrs.evolve(
            verdict, draft_seconds=draft_seconds, verify_seconds=verify_seconds, context_length=len(context), draft_forwards=draft.forwards,
            target_features=committed_features(out, draft, verdict, len(context)) if self.layers else None,
        )
        if slot.proposer is not None:
            slot.policy.observe(verdict)
            slot.proposer.observe(verdict)
        rec.draft_seconds += draft_seconds
        rec.verify_seconds += verify_seconds
        rec.record_round(len(draft), verdict.accepted)
        if draft.branches:
            rec.record_branches(len(draft.tree) - len(draft), verdict.branch_tokens)
        emitted = list(verdict.tokens)
        context.extend(emitted)
        self.generated += len(emitted)
        if self.call.stop:
            cut = self._stop_cut(len(emitted) + self.stop_window)
            if cut is not None:
                del context[len(context) - (self.generated - cut):]
                emitted = emitted[: len(emitted) - (self.generated - cut)]
                self.generated = cut
                self.finish = "stop"
        self.call.feed.tokens(emitted)
        if self.finish is None and verdict.eos:
            self.finish = "eos"
        if self.finish is None and self.generated >= self.job.limit:
            self.finish = self.ended_by
        return emitted

    def result(self) -> GenerationResult:
        slot, proposer, model = self.slot, self.slot.proposer, self.slot.model
        new_ids = self.context[len(self.job.prompt):]
        stats = self.rec.freeze(
            len(new_ids), model.forwards, proposer.forwards if proposer else 0, model.tokens_processed,
            model.forward_seconds, _draft_seconds(proposer),
        )
        text = self.d.codec.decode(new_ids) if self.d.codec is not None else ""
        self.call.feed.end()
        return GenerationResult(text, tuple(new_ids), tuple(self.job.prompt), self.finish, stats)

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

    def _stop_cut(self, window: int) -> int | None:
        """Number of generated tokens to keep if a stop string appeared this round, else None."""
        codec, context, generated, stop = self.d.codec, self.context, self.generated, self.call.stop
        start = len(context) - generated
        tail = context[max(start, len(context) - window):]
        if not any(s in codec.decode(tail) for s in stop):
            return None
        new = context[start:]
        for n in range(max(generated - window, 0), generated + 1):
            text = codec.decode(new[:n])
            if any(s in text for s in stop):
                return n
        return generated
