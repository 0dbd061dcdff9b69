"""What Ouroboros did, counted since construction (for benchmarks and tests)."""

from __future__ import annotations

import attrs


@attrs.define
class OuroborosStats:
    """Counters since construction (for benchmarks and tests)."""

    draft_steps: int = 0  # draft forwards made while drafting
    draft_tokens: int = 0  # tokens those forwards put in drafts
    phrase_tokens: int = 0  # of which came from an agreeing pool / context phrase
    copied_tokens: int = 0  # draft tokens copied from the context without a draft forward
    branch_rounds: int = 0  # rounds that attached branches
    branch_tokens_offered: int = 0  # tokens in attached branches (target compute spent on them)
    branch_kinds: dict[str, int] = attrs.field(factory=dict)  # branch tokens emitted, per kind
