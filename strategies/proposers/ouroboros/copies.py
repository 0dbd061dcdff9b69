"""Context copies: what followed the current n-gram in the context, proposed without a draft forward.

Inputs that the output repeats (extraction, summaries, RAG) are where a small draft agrees least
with the target and a copy most. While copies have lately been accepted at least as often as the
draft model's own first tokens (two records, learned afresh per call), a copy goes into the draft
as deterministic tokens, each offered to the policy; the draft model reads them in its next
forward and drafts on after them. Where the policy refuses the draft model's forward, a copy is
offered whatever the records say: the alternative is no draft at all.

With `adaptive`, each copied token is offered with its survival estimate from the copy record
(the first token's rate, then the rate of each next one), and the draft model's forward after a
copy with the draft's own first-token record: the policy's payoff cuts the copy where its tokens
stop paying for their verify slots, and ends the draft after it where a draft forward would not
pay (a draft token after a copy counts only if the whole copy is accepted).
"""

from __future__ import annotations

import attrs

from specdec.draft import Branch
from specdec.proposer import ProposalRequest
from specdec.strategies.estimates import DiscountedRate

from .gates import CostGate, rate
from .phrases import Alternative, Phrases, common_prefix
from .stats import OuroborosStats

# the source of the other copy candidates, offered as branches ("parted:copy")
COPY = "copy"


@attrs.define
class Copies:
    """Proposes context copies and learns, per call, whether they beat the draft model."""

    phrases: Phrases
    stats: OuroborosStats
    length: int  # tokens per copy, at most
    candidates: int  # context continuations looked up; the newest is the copy
    adaptive: bool  # report survival estimates (the policy's payoff then cuts the copy)
    prior: float  # where the gate's rates start in every call
    # first copied token accepted (entry), each next one (cont); an optimistic prior sends long
    # copies until the prompt's own record says otherwise
    gate: CostGate = attrs.field(init=False)
    # the draft model's own first token after the copies accepted: what a copy competes with
    draft_entry: DiscountedRate = attrs.field(init=False, factory=rate)
    placed: list[tuple[int, int]] = attrs.field(init=False, factory=list)  # (start, length) this round

    def __attrs_post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new call: both records start afresh."""
        self.gate = CostGate.starting_at(self.prior)
        self.draft_entry = rate()
        self.placed = []

    def offer(self, request: ProposalRequest, alternatives: list[Alternative]) -> int:
        """Offer a copy at the request's position (if one is found and the record prefers it to
        the draft model); with `candidates > 1`, the older continuations go to `alternatives`,
        hung where they part from the copy. Returns the number of copied tokens kept."""
        found = self.phrases.find(request.context, list(request.tokens), self.length, self.candidates, pool=False)
        if not found or self._draft_preferred(request):
            return 0
        copy = found[0][0]
        start = request.position
        # the policy may stop it sooner; a copy it declines leaves the position to the draft model
        copied = request.offer_each(copy, self.survivals(len(copy)))
        if copied:
            self.placed.append((start, copied))
            self.stats.copied_tokens += copied
            kept = request.tokens[start:]
            for other, _ in found[1:]:
                common = common_prefix(other, kept)
                if common < copied:
                    alternatives.append((Branch(start + common, other[common:]), COPY))
        return copied

    def _draft_preferred(self, request: ProposalRequest) -> bool:
        """The draft model's token is preferred where it has the better record and the policy lets it run."""
        return (
            self.gate.entry.value < self.draft_entry.value
            and request.policy.allows_forward(request.position)
            and not self.gate.probe()
        )

    def survivals(self, length: int) -> list[float] | None:
        """Each copied token's chance of acceptance after the ones before it (None without `adaptive`)."""
        if not self.adaptive:
            return None
        return [self.gate.entry.value] + [self.gate.cont.value] * (length - 1)

    def draft_survival(self, copied: int) -> float | None:
        """The draft model's first token's chance of acceptance after a copy of `copied` tokens
        (None when nothing was copied, or without `adaptive`)."""
        return self.draft_entry.value if copied and self.adaptive else None

    def learn(self, drafted: int, accepted: int) -> None:
        """Update the copy gate (first copied token accepted? how far on?) and the draft's own
        first-token record, from the positions each reached; the round's copies are then done."""
        copied = set()
        for start, length in self.placed:
            copied.update(range(start, start + length))
            if accepted < start:
                continue
            self.gate.learn(min(accepted - start, length), length)
        own = next((i for i in range(drafted) if i not in copied), None)
        if own is not None and accepted >= own:
            self.draft_entry.add(float(accepted > own), 1.0)
        self.placed = []
