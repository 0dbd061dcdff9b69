"""Telemetry of one generation and the frozen result handed back to the caller."""

from __future__ import annotations

import time
from typing import Any

import attrs


@attrs.frozen
class GenerationStats:
    """Counts and timings of one `generate` call.

    `mean_accepted_length` is tokens emitted per round (accepted draft tokens plus the correction or
    bonus token): 1.0 for target-only decoding. `accepted_at[i]` counts rounds whose draft token i
    was accepted, `drafted_at[i]` rounds that drafted a token i (per-position acceptance).
    """

    generated: int = 0
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0
    target_tokens: int = 0  # tokens the target processed (prompt + drafted + emitted tails)
    seconds: float = 0.0
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    target_forward_seconds: float = 0.0  # inside the target's forward calls
    draft_forward_seconds: float = 0.0  # inside the proposer's model forward calls
    accepted_at: tuple[int, ...] = ()
    drafted_at: tuple[int, ...] = ()
    branch_offered: int = 0  # branch tokens sent to the target beside the drafts (token trees)
    branch_accepted: int = 0  # of which emitted (not counted in `accepted`)

    @property
    def other_seconds(self) -> float:
        return max(self.seconds - self.draft_seconds - self.verify_seconds, 0.0)

    @property
    def overhead_seconds(self) -> float:
        """specdec's own time: everything that is not a model forward (policy, verifier, sampling, loop)."""
        return max(self.seconds - self.target_forward_seconds - self.draft_forward_seconds, 0.0)

    @property
    def overhead_fraction(self) -> float:
        return self.overhead_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_accepted_length(self) -> float:
        return self.generated / self.rounds if self.rounds else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["accepted_at"] = list(self.accepted_at)
        data["drafted_at"] = list(self.drafted_at)
        for name in ("other_seconds", "overhead_seconds", "overhead_fraction", "mean_accepted_length", "acceptance_rate", "tokens_per_second"):
            data[name] = getattr(self, name)
        return data


@attrs.frozen
class GenerationResult:
    text: str
    ids: tuple[int, ...]  # generated ids only
    prompt_ids: tuple[int, ...] = attrs.field(repr=False)
    finish_reason: str  # "eos", "length", "stop" or "context"
    stats: GenerationStats

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "ids": list(self.ids), "finish_reason": self.finish_reason, "stats": self.stats.to_dict()}


@attrs.define
class StatsRecorder:
    """Mutable accumulator the decoder fills round by round, frozen into `GenerationStats`."""

    target_forwards_start: int
    draft_forwards_start: int
    target_tokens_start: int
    target_seconds_start: float = 0.0
    draft_seconds_start: float = 0.0
    started: float = attrs.field(factory=time.perf_counter)
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    accepted_at: list[int] = attrs.field(factory=list)
    drafted_at: list[int] = attrs.field(factory=list)

    branch_offered: int = 0
    branch_accepted: int = 0

    def record_branches(self, offered: int, accepted: int) -> None:
        self.branch_offered += offered
        self.branch_accepted += accepted

    def record_round(self, drafted: int, accepted: int) -> None:
        self.rounds += 1
        self.drafted += drafted
        self.accepted += accepted
        while len(self.drafted_at) < drafted:
            self.drafted_at.append(0)
            self.accepted_at.append(0)
        for i in range(drafted):
            self.drafted_at[i] += 1
        for i in range(accepted):
            self.accepted_at[i] += 1

    def freeze(
        self, generated: int, target_forwards: int, draft_forwards: int, target_tokens: int,
        target_forward_seconds: float = 0.0, draft_forward_seconds: float = 0.0,
    ) -> GenerationStats:
        return GenerationStats(
            generated=generated,
            rounds=self.rounds,
            drafted=self.drafted,
            accepted=self.accepted,
            target_forwards=target_forwards - self.target_forwards_start,
            draft_forwards=draft_forwards - self.draft_forwards_start,
            target_tokens=target_tokens - self.target_tokens_start,
            seconds=time.perf_counter() - self.started,
            draft_seconds=self.draft_seconds,
            verify_seconds=self.verify_seconds,
            target_forward_seconds=target_forward_seconds - self.target_seconds_start,
            draft_forward_seconds=draft_forward_seconds - self.draft_seconds_start,
            accepted_at=tuple(self.accepted_at),
            branch_offered=self.branch_offered,
            branch_accepted=self.branch_accepted,
            drafted_at=tuple(self.drafted_at),
        )
