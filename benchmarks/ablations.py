"""What each rule of `auto` and of Ouroboros is worth: `specdec bench` with variants that switch one rule off.

A rule stays only where switching it off is slower by more than run-to-run noise (the paired
interval of `specdec compare`). The variants are registered in-process as policies named
`auto-no-<rule>` and proposers named `ouroboros-<variant>`; the remaining arguments go to
`specdec bench` unchanged, e.g.

    python benchmarks/ablations.py --per-category 3 --max-new-tokens 64 --out bench-out --name ablations \
        --methods "auto+draft:int8=true;auto-no-long-read+draft:int8=true" \
        --compare auto-no-long-read+draft:int8=true auto+draft:int8=true

Rules with a parameter (`optimism`, `explore_share`, Ouroboros' `adaptive`) are switched off by it
(`auto:optimism=0+draft:int8=true`); the others by these subclasses. A rule held in a module
constant is switched for the variant's own calls only, so variants interleave in one process.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import attrs

from specdec.cli import main
from specdec.plugins import PluginInfo, StrategyEntry, registry
from specdec.strategies.policies import CostAwarePolicy
from specdec.strategies.proposers import OuroborosProposer
from specdec.strategies.proposers.ouroboros import copies, gates, harvest


@attrs.define
class NoLongRead(CostAwarePolicy):
    """Reads a long unread stretch on carried-over evidence too."""

    name = "auto-no-long-read"

    def _may_read(self) -> bool:
        return True


@attrs.define
class NoCopyRounds(CostAwarePolicy):
    """A round in which the draft model may not run is a plain target step, copies or not."""

    name = "auto-no-copy-rounds"

    def _open_to_copies(self) -> bool:
        return False


# ---------------------------------------------------------------- Ouroboros
@attrs.define
class FullCopies(copies.Copies):
    def survivals(self, length: int) -> None:
        return None


@attrs.define
class DraftOnCopies(copies.Copies):
    def draft_survival(self, copied: int) -> None:
        return None


@attrs.define
class CopyReachRestarts(copies.Copies):
    """Each copy is priced as if the draft before it were certain (its reach starts afresh)."""

    reach_before = {}  # by part: the request's reach where its current copy starts (no new slot)

    def offer(self, request, alternatives) -> int:
        self.reach_before[id(self)] = request.reach
        return super().offer(request, alternatives)

    def survivals(self, length: int) -> list[float] | None:
        estimates = super().survivals(length)
        if estimates:
            estimates[0] /= self.reach_before.get(id(self), 1.0)
        return estimates


@attrs.define
class CopiesFirst(copies.Copies):
    def _draft_preferred(self, request) -> bool:
        return False


def _with_parts(name: str, doc: str, **parts: type) -> type:
    """An Ouroboros variant whose parts (e.g. `copies`) are the given subclasses."""

    def __attrs_post_init__(self) -> None:
        OuroborosProposer.__attrs_post_init__(self)
        for part, cls in parts.items():
            getattr(self, part).__class__ = cls

    return attrs.define(type(name, (OuroborosProposer,), {"__doc__": doc, "name": name, "__attrs_post_init__": __attrs_post_init__}))


@contextlib.contextmanager
def _constant(module, key: str, value) -> Iterator[None]:
    saved = getattr(module, key)
    setattr(module, key, value)
    try:
        yield
    finally:
        setattr(module, key, saved)


def _with_constant(name: str, doc: str, module, key: str, value) -> type:
    """An Ouroboros variant that runs with `module.key = value` during its own calls."""

    def wrap(method):
        def wrapped(self, *args):
            with _constant(module, key, value):
                return method(self, *args)

        return wrapped

    members = {m: wrap(getattr(OuroborosProposer, m)) for m in ("start", "propose", "observe")}
    return attrs.define(type(name, (OuroborosProposer,), {"__doc__": doc, "name": name, **members}))


OUROBOROS_VARIANTS = (
    _with_constant("ouroboros-no-probe", "Closed gates never probe.", gates, "PROBE_EVERY", 1 << 60),
    _with_constant("ouroboros-no-forget", "Gate rates weigh every observation alike.", gates, "KEEP", 1.0),
    _with_constant("ouroboros-min-harvest-3", "Harvest phrases of 3 tokens or more.", harvest, "MIN_HARVEST", 3),
    _with_parts("ouroboros-full-copies", "Copies report no survival: the payoff does not cut them.", copies=FullCopies),
    _with_parts("ouroboros-draft-on", "The draft model always drafts on after a copy.", copies=DraftOnCopies),
    _with_parts("ouroboros-copy-reach-restarts", "Each copy is priced apart from the draft before it.", copies=CopyReachRestarts),
    _with_parts("ouroboros-copies-first", "A copy is taken wherever one is found.", copies=CopiesFirst),
)

if __name__ == "__main__":
    reg = registry()
    origin = PluginInfo("benchmarks/ablations.py", "specdec", "ablation", builtin=True)
    for cls in (NoLongRead, NoCopyRounds):
        reg.add(StrategyEntry(cls.name, "policy", cls, origin))
    for cls in OUROBOROS_VARIANTS:
        reg.add(StrategyEntry(cls.name, "proposer", cls, origin))
    sys.exit(main(["bench", *sys.argv[1:]]))
