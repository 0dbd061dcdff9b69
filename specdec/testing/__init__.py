"""Exact losslessness checks for specdec strategies, installed with specdec.

For a plugin author, one call proves a policy and a proposer exactly lossless::

    from specdec.testing import assert_lossless
    from specdec.strategies.proposers import DraftModelProposer

    assert_lossless(policy_factory=lambda pair: MyPolicy(), proposer_factory=lambda pair: DraftModelProposer(pair.draft))

It raises AssertionError with the failing case, the total variation and the worst outputs. The
pieces it is built from are public too: `enumerate_outputs` (every random branch of a generation,
with its probability), `target_distribution` (target-only decoding, computed independently from a
toy table), the Hypothesis strategies `toy_pairs` / `sampling_configs` / `lossless_cases`, and
`assert_case_lossless` for a single hand-built case.

No pytest plugin: these are plain functions, so they work in any test runner or script, and a
`pytest11` entry point would load into every pytest run of an environment that has specdec
installed, for no fixture that a function call does not already give. The number of random cases
follows the loaded Hypothesis profile (`settings.load_profile`), or `max_examples=`.

Needs `hypothesis` (`pip install 'specdec[testing]'`). Imports no built-in strategy: the core
package does not depend on `specdec.strategies`.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("specdec.testing needs hypothesis: pip install 'specdec[testing]'") from None

from specdec.testing.enumeration import EnumeratingSampler, enumerate_outputs
from specdec.testing.lossless import (
    TOLERANCE,
    Comparison,
    LosslessCase,
    assert_case_lossless,
    assert_lossless,
    compare,
    decoder_distribution,
    expected_distribution,
    lossless_cases,
)
from specdec.testing.reference import reference_warp, target_distribution
from specdec.testing.toys import MAX_NEW_BY_VOCAB, ToyPair, probability_rows, sampling_configs, seeded_toy, toy_models, toy_pairs

__all__ = [
    "MAX_NEW_BY_VOCAB",
    "TOLERANCE",
    "Comparison",
    "EnumeratingSampler",
    "LosslessCase",
    "ToyPair",
    "assert_case_lossless",
    "assert_lossless",
    "compare",
    "decoder_distribution",
    "enumerate_outputs",
    "expected_distribution",
    "lossless_cases",
    "probability_rows",
    "reference_warp",
    "sampling_configs",
    "seeded_toy",
    "target_distribution",
    "toy_models",
    "toy_pairs",
]
