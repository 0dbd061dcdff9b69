"""The exact losslessness check: a strategy's output distribution against the target's own.

A case is a toy pair, a prompt, a length, sampling settings, a policy and a proposer. The whole
`Decoder` is run once per branch of its random tree (`enumerate_outputs`), and the probability of
every generated sequence is compared with target-only decoding computed straight from the target's
table (`target_distribution`). Speculative decoding is lossless exactly when the two agree, so the
tolerance is float rounding (1e-9), not a statistical bound.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import attrs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from specdec.decoder import Decoder
from specdec.sampling import SamplingConfig
from specdec.testing.enumeration import enumerate_outputs
from specdec.testing.reference import target_distribution
from specdec.testing.toys import MAX_NEW_BY_VOCAB, ToyPair, sampling_configs, toy_pairs
from specdec.verifier import Verifier

TOLERANCE = 1e-9
Distribution = dict[tuple[int, ...], float]


@attrs.frozen
class LosslessCase:
    """One enumerable generation: `policy` is a template (each run gets a deep copy) and
    `make_proposer` builds a fresh proposer per run, so no run sees another's state."""

    pair: ToyPair
    prompt: tuple[int, ...]
    max_new_tokens: int
    sampling: SamplingConfig
    policy: object
    make_proposer: Callable[[], Any] = attrs.field(eq=False, repr=False)


def decoder_distribution(case: LosslessCase, verifier: Verifier | None = None) -> Distribution:
    """{generated ids: probability} of speculative decoding, over every random branch."""
    s = case.sampling

    def run(sampler):
        decoder = Decoder(
            case.pair.target, proposer=case.make_proposer(), policy=copy.deepcopy(case.policy), verifier=verifier or Verifier()
        )
        result = decoder.generate(
            list(case.prompt), case.max_new_tokens, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, sampler=sampler
        )
        return result.ids

    return enumerate_outputs(run)


def expected_distribution(case: LosslessCase) -> Distribution:
    """{generated ids: probability} of target-only decoding, from the target's table."""
    s = case.sampling
    return target_distribution(case.pair.target.row, case.prompt, case.max_new_tokens, case.pair.eos, s.temperature, s.top_k, s.top_p)


@attrs.frozen
class Comparison:
    """The two distributions of one case, and what a reader needs when they differ."""

    case: LosslessCase
    got: Distribution
    expected: Distribution

    def differences(self) -> list[tuple[tuple[int, ...], float, float]]:
        """(output, speculative probability, target's probability), largest difference first."""
        rows = [(seq, self.got.get(seq, 0.0), self.expected.get(seq, 0.0)) for seq in self.got.keys() | self.expected.keys()]
        return sorted(rows, key=lambda row: (-abs(row[1] - row[2]), row[0]))

    @property
    def largest_difference(self) -> float:
        return max((abs(g - e) for _, g, e in self.differences()), default=0.0)

    @property
    def total_variation(self) -> float:
        return 0.5 * sum(abs(g - e) for _, g, e in self.differences())

    def report(self, worst: int = 5) -> str:
        case, s = self.case, self.case.sampling
        pair = case.pair
        sampling = "greedy" if s.greedy else f"temperature {s.temperature}, top_k {s.top_k}, top_p {s.top_p}"
        lines = [
            f"the output distribution differs from the target's: total variation {self.total_variation:.3g}, "
            f"largest difference {self.largest_difference:.3g} (tolerance {TOLERANCE:g})",
            f"  toy pair: vocabulary {pair.vocab}, target order {pair.target.order}, draft order {pair.draft.order}, "
            f"end tokens {sorted(pair.eos)}",
            f"  prompt {list(case.prompt)}, {case.max_new_tokens} new tokens, {sampling}",
            f"  policy: {_short(case.policy)}",
            f"  proposer: {_short(case.make_proposer())}",
            "  worst outputs (generated ids: speculative vs target's probability):",
        ]
        lines += [f"    {list(seq)}: {g:.6f} vs {e:.6f}" for seq, g, e in self.differences()[:worst]]
        return "\n".join(lines)


def _short(obj: object, limit: int = 240) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare(case: LosslessCase, verifier: Verifier | None = None) -> Comparison:
    return Comparison(case, decoder_distribution(case, verifier), expected_distribution(case))


def assert_case_lossless(case: LosslessCase, verifier: Verifier | None = None) -> None:
    """Raise AssertionError with a report if this one case is not exactly lossless."""
    comparison = compare(case, verifier)
    if comparison.largest_difference > TOLERANCE:
        raise AssertionError(comparison.report())


PolicyStrategies = Callable[[ToyPair], st.SearchStrategy]
ProposerStrategies = Callable[[ToyPair], st.SearchStrategy[Callable[[], Any]]]


@st.composite
def lossless_cases(draw, policies: PolicyStrategies, proposers: ProposerStrategies) -> LosslessCase:
    """Random cases: a toy pair, a prompt, a length, sampling settings, then `policies(pair)` (a
    strategy of policy templates) and `proposers(pair)` (a strategy of zero-argument factories)."""
    pair = draw(toy_pairs())
    prompt = tuple(draw(st.lists(st.integers(1, pair.vocab - 1), min_size=1, max_size=6)))
    max_new = draw(st.integers(2, MAX_NEW_BY_VOCAB[pair.vocab]))
    sampling = draw(sampling_configs(pair.vocab))
    policy = draw(policies(pair))
    make_proposer = draw(proposers(pair))
    return LosslessCase(pair, prompt, max_new, sampling, policy, make_proposer)


def _policy_strategy(factory: Callable[[ToyPair], Any]) -> PolicyStrategies:
    def strategy(pair: ToyPair) -> st.SearchStrategy:
        made = factory(pair)
        return made if isinstance(made, st.SearchStrategy) else st.just(made)

    return strategy


def _proposer_strategy(factory: Callable[[ToyPair], Any]) -> ProposerStrategies:
    def strategy(pair: ToyPair) -> st.SearchStrategy[Callable[[], Any]]:
        made = factory(pair)
        if isinstance(made, st.SearchStrategy):
            return made.map(lambda template: lambda: copy.deepcopy(template))
        return st.just(lambda: factory(pair))

    return strategy


def assert_lossless(
    *,
    policy_factory: Callable[[ToyPair], Any],
    proposer_factory: Callable[[ToyPair], Any],
    verifier: Verifier | None = None,
    max_examples: int | None = None,
    shrink: bool = True,
) -> None:
    """Prove a policy and proposer exactly lossless on random toy pairs, or raise AssertionError.

    `policy_factory(pair)` and `proposer_factory(pair)` get a `ToyPair` (`pair.draft` is the draft
    model, `pair.vocab` its vocabulary) and return a fresh policy / proposer, or a Hypothesis
    strategy of them to vary their parameters too (each run then works on a deep copy). Every case
    draws a pair, a prompt (1-6 tokens, long enough to repeat itself so that proposers which look
    text up find something), a length and sampling settings (greedy, or a temperature with or
    without top-k and top-p) and is enumerated exactly. `max_examples` defaults to the loaded Hypothesis
    profile's; `shrink=False` reports the first failing case instead of a minimal one.
    """
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    overrides = {} if max_examples is None else {"max_examples": max_examples}

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], phases=phases, **overrides)
    @given(case=lossless_cases(_policy_strategy(policy_factory), _proposer_strategy(proposer_factory)))
    def check(case: LosslessCase) -> None:
        assert_case_lossless(case, verifier)

    check()
