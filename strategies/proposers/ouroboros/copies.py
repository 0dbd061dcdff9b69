"""Context copies: what followed the current n-gram in the context, proposed without a draft forward.

Inputs that the output repeats (extraction, summaries, RAG) are where a small draft agrees least
with the target and a copy most. While copies have lately been accepted at least as often as the
draft model's own first tokens (two records, learned afresh per call), a copy goes into the draft
as deterministic tokens, each offered to the policy; the draft model reads them in its next
forward and drafts on after them. Where the policy refuses the draft model's forward, a copy is
offered whatever the records say: the alternative is no draft at all.

Fixed k and SVIP keep every deterministic token (zero entropy), so with `adaptive` a copy is cut
to the length its gate pays for, and the draft model drafts on after a copy only while that pays
(a draft token after a copy counts only if the whole copy is accepted; a policy cannot judge that).
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
    adaptive: bool
    prior: float  # where the gate's rates start in every call
    target_token_cost: float  # an extra target token / an emitted token
    draft_step_cost: float  # a draft forward / a target step
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

    def offer(self, request: ProposalRequest, alternatives: list[Alternative]) -> bool:
        """Offer a copy at the request's position (if one is found and the gate lets it through);
        with `candidates > 1`, the older continuations go to `alternatives`, hung where they part
        from the copy. Returns False when the draft is over (the policy stopped, the budget, an end
        token, or drafting on after the copy does not pay)."""
        found = self.phrases.find(request.context, list(request.tokens), self.length, self.candidates, pool=False)
        if not found:
            return True
        if self._draft_preferred(request):
            return True
        copy = found[0][0][: self._worth(len(found[0][0]))]
        if not copy:
            return True
        start = request.position
        # the policy may stop it sooner; a copy it declines leaves the position to the draft model
        copied = request.offer_each(copy)
        if copied:
            self.placed.append((start, copied))
            self.stats.copied_tokens += copied
            kept = request.tokens[start:]
            for other, _ in found[1:]:
                common = common_prefix(other, kept)
                if common < copied:
                    alternatives.append((Branch(start + common, other[common:]), COPY))
        return not request.over and (not copied or self.drafting_on_pays(copied))

    def _draft_preferred(self, request: ProposalRequest) -> bool:
        """The draft model's token is preferred where it has the better record and the policy lets it run."""
        return (
            self.gate.entry.value < self.draft_entry.value
            and request.policy.allows_forward(request.position)
            and not self.gate.probe()
        )

    def _worth(self, length: int) -> int:
        """A found copy's tokens worth offering: with `adaptive`, the length its tokens' chance of
        being emitted pays for."""
        return self.gate.worth(self.target_token_cost, length) if self.adaptive else length

    def drafting_on_pays(self, length: int) -> bool:
        """Whether the draft model should draft on after a copy of `length` tokens: while the
        chance of the whole copy being accepted times its own record pays for a draft forward and
        the token's verify width."""
        if not self.adaptive:
            return True
        return self.gate.reach(length) * self.draft_entry.value >= self.draft_step_cost + self.target_token_cost

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
