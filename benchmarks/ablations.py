"""What each rule of `auto` is worth: `specdec bench` with variants that switch one rule off.

A rule stays only where switching it off is slower by more than run-to-run noise (the paired
interval of `specdec compare`). The variants are registered in-process as policies named
`auto-no-<rule>`; the remaining arguments go to `specdec bench` unchanged, e.g.

    python benchmarks/ablations.py --per-category 3 --max-new-tokens 64 --out bench-out --name ablations \
        --methods "auto+draft:int8=true;auto-no-long-read+draft:int8=true" \
        --compare auto-no-long-read+draft:int8=true auto+draft:int8=true

Rules with a parameter (`optimism`, `explore_share`) are switched off by it
(`auto:optimism=0+draft:int8=true`); the others by these subclasses.
"""

from __future__ import annotations

import sys

import attrs

from specdec.cli import main
from specdec.plugins import PluginInfo, StrategyEntry, registry
from specdec.strategies.policies import CostAwarePolicy


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


VARIANTS = (NoLongRead, NoCopyRounds)

if __name__ == "__main__":
    reg = registry()
    origin = PluginInfo("benchmarks/ablations.py", "specdec", "ablation", builtin=True)
    for cls in VARIANTS:
        reg.add(StrategyEntry(cls.name, "policy", cls, origin))
    sys.exit(main(["bench", *sys.argv[1:]]))
