"""The length-policy protocol: when to stop drafting.

A policy is a decision object. At the start of a round it names a cap on the draft length (0 means
"no speculation this round": a plain target step). Before each draft token is drawn,
`should_draft` may end the round from the draft's distribution alone (entropy, top-1 probability,
margin, hidden state); after the token is drawn, `decide` answers CONTINUE or STOP (keep this token,
then verify). After verification it observes the outcome to adapt. It never sees the target's
distribution while drafting, so it changes only how many tokens are proposed, never which are kept.

Why two calls: a token *drawn at random* may not be discarded because of its own value. Dropping
it whenever it is, say, unlikely under q changes the distribution it was proposed from, and the
p/q acceptance rule is then no longer exact (the exact-enumeration test shows a total-variation
error of 0.25 on a toy pair). A stop decision *after* keeping the token only shortens the draft,
which is always safe. So the decision to leave a position out is made before the draw.
DROP remains for tokens that were not drawn at random (greedy argmax, lookup, phrases), where
discarding by value is safe; the proposer rejects it for a sampled token.
"""

from __future__ import annotations

import enum
import math
from typing import Protocol, Sequence, runtime_checkable

import attrs

from specdec.errors import ConfigurationError
from specdec.features import DraftFeatures, TokenFeatures
from specdec.payoff import Payoff
from specdec.verification import Verification


class Decision(enum.Enum):
    CONTINUE = "continue"  # keep the token and draft another
    STOP = "stop"  # keep the token and send the draft for verification
    DROP = "drop"  # discard the token and send the draft without it (not for sampled tokens)


@attrs.frozen
class RoundState:
    """What a policy may know when a round starts."""

    context_length: int  # prompt + generated tokens so far
    generated: int  # tokens generated so far in this call
    remaining: int  # tokens the call may still generate
    pending: int = 0  # context tokens the proposer's model has not read yet (`Proposer.pending`)


@runtime_checkable
class LengthPolicy(Protocol):
    """Decides the draft length, token by token (see module docstring)."""

    name: str
    wants_hidden: bool  # ask the proposer for draft hidden states in the features
    # prices of a verify slot and a draft forward, against which the drafting loop weighs
    # proposals that come with a survival estimate (copies; see specdec/payoff.py)
    payoff: Payoff

    def start(self) -> None:
        """A new `generate` call begins (reset per-call state; keep what should persist)."""
        ...

    def begin_round(self, state: RoundState) -> int:
        """Cap on the number of tokens to draft this round (0 = plain target step)."""
        ...

    def allows_forward(self, position: int) -> bool:
        """Before a proposer runs its model for draft position `position`: False ends the draft
        there, before the forward is paid.

        A model forward costs a step, and the first one of a round also reads whatever context the
        model has not seen (the whole prompt, the first time). Tokens that need no forward (copies,
        lookups) are not asked about, so a policy can take them while refusing the model (`auto`
        on long inputs). Proposers that run a model ask before each forward.
        """
        ...

    def should_draft(self, features: DraftFeatures) -> bool:
        """Before the token at `features.position` is drawn: False ends the round without it.

        `features` describes the draft's distribution only (entropy, top_prob, margin, top_token,
        hidden); for deterministic proposals the proposed token is known as well.
        """
        ...

    def decide(self, features: TokenFeatures) -> Decision:
        """After a candidate token is drawn: CONTINUE, or STOP (keep it and verify)."""
        ...

    def observe(self, verification: Verification) -> None:
        """The verifier's verdict on every round, including rounds that drafted nothing.

        `verification.draft_seconds` / `verify_seconds` time the round's two phases.
        """
        ...


@runtime_checkable
class ReferencePolicy(Protocol):
    """Optional, for analysis: a policy that must know the target's greedy output of the prompt
    before a call (the oracle). `Decoder.prepare` computes it with an untimed target-only run."""

    def set_continuation(self, continuation: Sequence[int]) -> None:
        """The prompt followed by the target's greedy output, as token ids."""
        ...


@runtime_checkable
class SelfTimedPolicy(Protocol):
    """Optional: a policy that times its own work (a network's evaluations), so that benchmarks
    can report the policy's share of a run."""

    overhead_seconds: float  # seconds spent inside the policy so far


def positive_int(_: object, attribute: attrs.Attribute, value: int) -> None:
    """attrs validator shared by policies and proposers: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def non_negative_int(_: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{attribute.name} must be an integer >= 0, got {value!r}")


def optional_positive_int(_: object, attribute: attrs.Attribute, value: int | None) -> None:
    """attrs validator: None or an integer >= 1 (e.g. a proposer's `head_tokens`)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{attribute.name} must be a positive integer or None, got {value!r}")


def boolean(_: object, attribute: attrs.Attribute, value: bool) -> None:
    """attrs validator: a real bool (so that a mistyped 'false' string is not silently truthy)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{attribute.name} must be True or False, got {value!r}")


def one_of(*choices: str):
    """attrs validator factory: one of the named choices (e.g. a rule or a matching mode)."""

    def check(_: object, attribute: attrs.Attribute, value: str) -> None:
        if value not in choices:
            raise ConfigurationError(f"{attribute.name} must be one of {', '.join(map(repr, choices))}, got {value!r}")

    return check


def finite_in(low: float, high: float, *, low_open: bool = False):
    """attrs validator factory: a finite number in [low, high] (or (low, high])."""

    def check(_: object, attribute: attrs.Attribute, value: float) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low) and value <= high
        if not ok:
            bracket = "(" if low_open else "["
            closing = ")" if high == math.inf else "]"
            raise ConfigurationError(
                f"{attribute.name} must be a finite number in {bracket}{low}, {high}{closing}, got {value!r}"
            )

    return check


@attrs.define
class PolicyBase:
    """Defaults for the optional parts of the protocol; subclasses set `name` and `decide`."""

    name = "base"
    wants_hidden = False
    payoff = Payoff()

    def start(self) -> None:
        pass

    def allows_forward(self, position: int) -> bool:
        return True

    def should_draft(self, features: DraftFeatures) -> bool:
        return True

    def observe(self, verification: Verification) -> None:
        pass
