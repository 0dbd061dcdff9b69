"""Branches for the target: alternatives verified in the same target forward as the draft.

When the target supports token trees, up to `branches` branches (each at most `branch_length`
tokens) hang off the draft, each seeing the context and its part of the draft but not the other
branches, and the verifier follows the branch holding its own choice. First come the phrases the
draft parted from, hung where they part (copying from the prompt is where a small draft agrees
least, and there the target often agrees with the phrase), then Ouroboros' candidate suffixes
after the whole draft.

Branch tokens widen the target's forward, so with `adaptive` they are cut to the length whose
tokens are still likely enough to be emitted to pay for their compute. One gate serves every kind
(parted phrase / suffix, context / pool): they share one payoff estimate, so that exploring them
costs one probe, not one per kind.
"""

from __future__ import annotations

import attrs

from specdec.draft import Branch, Draft
from specdec.proposer import ProposalRequest
from specdec.verification import Verification

from .gates import CostGate
from .phrases import POOL, Alternative, Phrases
from .stats import OuroborosStats


@attrs.define
class Branches:
    """Chooses a round's branches and learns from the target how far they went."""

    phrases: Phrases
    stats: OuroborosStats
    count: int  # branches per round, at most (0: none)
    length: int  # tokens per branch, at most
    from_pool: bool  # also offer pool phrases (else the context's only)
    adaptive: bool
    target_token_cost: float  # an extra target token / an emitted token
    gate: CostGate = attrs.field(init=False, factory=CostGate)  # first token emitted; each next one
    kinds: list[str] = attrs.field(init=False, factory=list)  # of the branches last chosen

    def reset(self) -> None:
        """A new call: the gate starts afresh."""
        self.gate = CostGate()

    def choose(self, request: ProposalRequest, tokens: list[int], alternatives: list[Alternative]) -> list[Branch]:
        """Up to `count` branches for the target (the kind each came from goes to `kinds`), each
        cut to the round's tree depth and, when adaptive, to what pays."""
        depth = request.tree_depth
        if self.count == 0 or depth == 0 or not tokens:  # no draft: the policy wants a plain step
            self.kinds = []
            return []
        offers = [
            (b, "parted:" + source)
            for b, source in sorted(alternatives, key=lambda item: item[0].at)
            if source != POOL or self.from_pool
        ]
        if tokens[-1] not in request.eos_token_ids:
            found = self.phrases.find(request.context, tokens, self.length, self.count, pool=self.from_pool)
            offers += [(Branch(len(tokens), phrase), "suffix:" + source) for phrase, source in found]
        chosen: list[Branch] = []
        kinds: list[str] = []
        seen: set[tuple[int, tuple[int, ...]]] = set()
        for branch, kind in offers:
            if len(chosen) >= self.count:
                break
            cap = min(self.length, depth - branch.at, len(branch.tokens))
            length = self.gate.length(self.target_token_cost, cap) if self.adaptive else cap
            cut = branch.tokens[:length]
            if cut and (branch.at, cut) not in seen:
                seen.add((branch.at, cut))
                chosen.append(Branch(branch.at, cut))
                kinds.append(kind)
        self.stats.branch_rounds += bool(chosen)
        self.stats.branch_tokens_offered += sum(len(b.tokens) for b in chosen)
        self.kinds = kinds
        return chosen

    def learn(self, draft: Draft, verification: Verification) -> None:
        """Update the gate (was each branch's first token emitted, and how far did it go) and the
        tokens emitted per kind; only for the branches `choose` returned last."""
        if not draft.branches or len(self.kinds) != len(draft.branches):
            return
        on_path = set(verification.tree_path)
        for branch, nodes, kind in zip(draft.branches, draft.tree.branch_nodes, self.kinds):
            emitted = sum(1 for node in nodes if node in on_path)
            self.gate.learn(emitted, len(branch.tokens))
            self.stats.branch_kinds[kind] = self.stats.branch_kinds.get(kind, 0) + emitted
