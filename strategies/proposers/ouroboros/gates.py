"""Cost gates: how many tokens of a phrase, a copy or a branch are worth proposing.

Extra tokens in a forward cost compute (much more on a CPU than on a GPU) and pay only when they
are used. A gate keeps the record that says how likely that is and cuts a proposal to the length
that pays: if token k (1-based) is used with probability entry * cont**(k-1) and each costs `cost`
(in units of what a used token saves), tokens are offered while that exceeds the cost. A gate that
says no still says yes every `PROBE_EVERY`-th time, so that its record can recover.

The rates forget (`KEEP` per observation: recent rounds weigh most) and start at 1 in 2; the
proposer builds its gates afresh for each `generate` call, since payoffs differ from prompt to
prompt (an input the output copies, or not).
"""

from __future__ import annotations

import math

import attrs

from specdec.strategies.estimates import DiscountedRate

# a closed gate still probes every this many opportunities (keeps its estimate current)
PROBE_EVERY = 8
# weight of the earlier observations at each new one
KEEP = 0.95


def rate(hits: float = 1.0, trials: float = 2.0) -> DiscountedRate:
    """A rate of hits / trials whose pseudo-counts (1 in 2 by default) fade with the observations."""
    return DiscountedRate(prior=0.0, weight=0.0, keep=KEEP, hits=hits, trials=trials)


def worth_length(entry: float, cont: float, cost: float, cap: int) -> int:
    """Tokens worth offering when token k (1-based) is used with probability entry * cont**(k-1)
    and each costs `cost` (in units of what a used token saves): the largest k still in profit."""
    if cap <= 0 or entry <= cost:
        return 0
    if cont >= 1.0:
        return cap
    if cont <= 0.0:
        return 1
    return max(1, min(cap, 1 + int(math.log(cost / entry) / math.log(cont))))


@attrs.define
class Probing:
    """Counts the times a gate was closed; every `PROBE_EVERY`-th of them it opens anyway."""

    refusals: int = attrs.field(default=0, kw_only=True)

    def probe(self) -> bool:
        """A closed gate still says yes now and then, so that its estimate can recover."""
        self.refusals += 1
        return self.refusals % PROBE_EVERY == 0


@attrs.define
class CostGate(Probing):
    """A gate for proposals whose first token (`entry`) and each next one (`cont`) succeed at
    different rates: copies and branches, whose first token is the uncertain one."""

    entry: DiscountedRate = attrs.field(factory=rate)
    cont: DiscountedRate = attrs.field(factory=rate)

    @classmethod
    def starting_at(cls, prior: float) -> CostGate:
        """Both rates at `prior` (worth two observations)."""
        return cls(rate(2.0 * prior, 2.0), rate(2.0 * prior, 2.0))

    def worth(self, cost: float, cap: int) -> int:
        """Tokens worth offering at `cost` each, at most `cap` (0: none pays)."""
        return worth_length(self.entry.value, self.cont.value, cost, cap)

    def length(self, cost: float, cap: int) -> int:
        """`worth`, or `cap` when no token pays but the gate probes."""
        length = self.worth(cost, cap)
        if length == 0 and self.probe():
            length = cap
        return length

    def reach(self, length: int) -> float:
        """The chance that all of `length` tokens are used."""
        return self.entry.value * self.cont.value ** (length - 1)

    def learn(self, used: int, offered: int) -> None:
        """`used` of the `offered` tokens were used, from the first on."""
        self.entry.add(float(used > 0), 1.0)
        if used:
            self.cont.add(used - 1, used - 1 + (used < offered))


@attrs.define
class AgreementGate(Probing):
    """A gate for phrases fed to the draft model: each token is agreed with at one rate (after a
    disagreement the rest of the phrase is useless), so token k is agreed with at rate**k."""

    rate: DiscountedRate = attrs.field(factory=rate)

    def length(self, cost: float, cap: int) -> int:
        """Tokens worth feeding at `cost` each, at most `cap`; `cap` when none pays but the gate probes."""
        value = self.rate.value
        length = worth_length(value, value, cost, cap)
        if length == 0 and self.probe():
            length = cap
        return length

    def learn(self, agreed: int, offered: int) -> None:
        """The draft agreed with the first `agreed` of `offered` tokens."""
        self.rate.add(agreed, agreed + (agreed < offered))
