"""Several sequences drafting at once: each step's draft forwards share one forward per model.

Every sequence in flight drafts its round as `DraftSteps` (a proposer's `drafting`, or a plain
`propose` that asks for no step). The driver runs them in lockstep: it collects the forward each
sequence asks for next, feeds those whose caches are rows of the same `BatchModel` in one
`forward_rows` (`feed_rows`), runs any other on its own, and sends each sequence its output.
A sequence whose policy stopped drafting simply asks for nothing more, so the rows of a step are
the sequences still drafting. Each sequence is charged the seconds of its own drafting code and
its share of every forward it took part in (`feed_rows`: the charges of a forward add up to its
wall time), so that a cost-aware policy prices what a row's draft costs the machine, not the
whole batch's forward.
"""

from __future__ import annotations

import time
from typing import Sequence

from specdec.draft import Draft
from specdec.integrations.base import BatchModel
from specdec.proposer import DraftSteps, ProposalRequest, Proposer, SteppedProposer
from specdec.sequence_cache import Feed, feed_rows


def proposal_steps(proposer: Proposer, request: ProposalRequest, stepwise: bool = True) -> DraftSteps:
    """The proposer's draft for `request` as `DraftSteps`: its `drafting` for a `SteppedProposer`
    (when `stepwise`), else `propose` in one go (no step to share)."""
    if stepwise and isinstance(proposer, SteppedProposer):
        return (yield from proposer.drafting(request))
    return proposer.propose(request)


def draft_together(steps: Sequence[DraftSteps]) -> list[tuple[Draft, float]]:
    """Each sequence's draft and the seconds it was charged, in order."""
    drafts: list[Draft | None] = [None] * len(steps)
    seconds = [0.0] * len(steps)
    asked: dict[int, Feed] = {}

    def resume(i: int, output: object) -> None:
        started = time.perf_counter()
        try:
            asked[i] = steps[i].send(output)
        except StopIteration as done:
            drafts[i] = done.value
        seconds[i] += time.perf_counter() - started

    for i in range(len(steps)):
        resume(i, None)
    while asked:
        step = sorted(asked.items())
        asked.clear()
        for members, batch in _by_model(step):
            outputs, charges = feed_rows(batch, [feed for _, feed in members])
            for (i, _), output, charge in zip(members, outputs, charges):
                seconds[i] += charge
                resume(i, output)
    return [(draft, s) for draft, s in zip(drafts, seconds)]


Group = tuple[list[tuple[int, Feed]], "BatchModel | None"]  # (sequence index, feed) of one forward, its batched model


def _by_model(step: list[tuple[int, Feed]]) -> list[Group]:
    """The step's feeds grouped by the batched model their rows belong to (one group per forward);
    a feed on a model of its own is a group by itself."""
    groups: dict[int, Group] = {}
    alone: list[Group] = []
    for i, feed in step:
        batch = feed.batch
        if batch is None:
            alone.append(([(i, feed)], None))
        else:
            groups.setdefault(id(batch), ([], batch))[0].append((i, feed))
    return [*groups.values(), *alone]
