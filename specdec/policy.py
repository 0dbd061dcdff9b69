"""The length-policy protocol: when to stop drafting.

A policy is a decision object. At the start of a round it names a cap on the draft length (0 means
"no speculation this round": a plain target step). After each candidate token it answers CONTINUE,
STOP (keep this token, then verify) or DROP (discard this token, then verify). After verification
it observes the outcome to adapt. It never sees the target's distribution while drafting, so it
can change only how many tokens are proposed, never which are kept.
"""

from __future__ import annotations

import enum
import math
from typing import Protocol, runtime_checkable

import attrs

from specdec.errors import ConfigurationError
from specdec.features import TokenFeatures
from specdec.verification import Verification


class Decision(enum.Enum):
    CONTINUE = "continue"  # keep the token and draft another
    STOP = "stop"  # keep the token and send the draft for verification
    DROP = "drop"  # discard the token and send the draft without it


@attrs.frozen
class RoundState:
    """What a policy may know when a round starts."""

    context_length: int  # prompt + generated tokens so far
    generated: int  # tokens generated so far in this call
    remaining: int  # tokens the call may still generate


@runtime_checkable
class LengthPolicy(Protocol):
    """Decides the draft length, token by token (see module docstring)."""

    name: str
    wants_hidden: bool  # ask the proposer for draft hidden states in the features

    def start(self) -> None:
        """A new `generate` call begins (reset per-call state; keep what should persist)."""
        ...

    def begin_round(self, state: RoundState) -> int:
        """Cap on the number of tokens to draft this round (0 = plain target step)."""
        ...

    def decide(self, features: TokenFeatures) -> Decision:
        """After a candidate token: continue, keep and stop, or drop and stop."""
        ...

    def observe(self, verification: Verification) -> None:
        """The verifier's verdict on every round, including rounds that drafted nothing.

        `verification.draft_seconds` / `verify_seconds` time the round's two phases.
        """
        ...


def positive_int(_: object, attribute: attrs.Attribute, value: int) -> None:
    """attrs validator shared by policies and proposers: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def non_negative_int(_: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{attribute.name} must be an integer >= 0, got {value!r}")


def finite_in(low: float, high: float, *, low_open: bool = False):
    """attrs validator factory: a finite number in [low, high] (or (low, high])."""

    def check(_: object, attribute: attrs.Attribute, value: float) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low) and value <= high
        if not ok:
            bracket = "(" if low_open else "["
            raise ConfigurationError(f"{attribute.name} must be a finite number in {bracket}{low}, {high}], got {value!r}")

    return check


@attrs.define
class PolicyBase:
    """Defaults for the optional parts of the protocol; subclasses set `name` and `decide`."""

    name = "base"
    wants_hidden = False

    def start(self) -> None:
        pass

    def observe(self, verification: Verification) -> None:
        pass
