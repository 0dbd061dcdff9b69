"""The +2/-1 draft-length schedule of Hugging Face transformers' assisted generation."""

from __future__ import annotations

import attrs

from specdec.features import TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, boolean, positive_int
from specdec.verification import Verification


@attrs.define
class HeuristicPolicy(PolicyBase):
    """transformers' `num_assistant_tokens_schedule="heuristic"`; SVIP's "heuristics" baseline.

    Sources: `AssistedCandidateGenerator.update_candidate_strategy` in transformers'
    `generation/candidate_generator.py`, and the baseline of SVIP's code (arXiv 2411.18462).

    Draft `k` tokens (no early stop inside a round). After each verified round: if every drafted
    token was accepted, k += 2, otherwise k = max(1, k - 1); k is clipped to `max_draft`. Rounds
    that drafted nothing (plain target steps) leave k unchanged.

    Defaults: `k=5`, the starting length of SVIP's "heuristics" baseline (transformers itself starts
    at `num_assistant_tokens`: 5 before ~4.45, 20 since); `max_draft=40`, SVIP's cap
    (transformers has none). `persist=False` restarts from `k` at every `generate` call
    (transformers' "heuristic_transient"); `persist=True` carries k over ("heuristic").
    """

    name = "heuristic"
    k: int = attrs.field(default=5, validator=positive_int)
    max_draft: int = attrs.field(default=40, validator=positive_int)
    persist: bool = attrs.field(default=False, validator=boolean)
    current: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.current = min(self.k, self.max_draft)

    def start(self) -> None:
        if not self.persist:
            self.current = min(self.k, self.max_draft)

    def begin_round(self, state: RoundState) -> int:
        return self.current

    def decide(self, features: TokenFeatures) -> Decision:
        return Decision.CONTINUE

    def observe(self, verification: Verification) -> None:
        if verification.drafted == 0:
            return
        if verification.all_accepted:
            self.current = min(self.current + 2, self.max_draft)
        else:
            self.current = max(1, self.current - 1)
