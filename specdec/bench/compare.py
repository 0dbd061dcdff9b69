"""One method over another from the same benchmark run, per category, with a bootstrap interval.

"Never more than 5% below the plain proposer on any category" is a claim about a ratio of two
speeds measured on a handful of prompts on a noisy machine; whether a category at 0.93 is a real
loss or a few unlucky prompts depends on how much the ratio moves when the prompts change. The
comparison times every prompt by its fastest repeat (as `fastest` in the bench table), divides the
two methods' tokens/s over the same prompts, and resamples the prompts (with replacement, within
each category) to give an interval: a category whose whole interval lies below 0.95 is a loss the
prompts agree on; one whose interval straddles it needs more prompts before anyone claims either.
"""

from __future__ import annotations

import random
import statistics
from typing import Sequence

import attrs

from specdec.bench.runner import Timed, fastest_repeats
from specdec.errors import ConfigurationError

# bootstrap resamples per interval: enough for stable 5% / 95% percentiles, cheap on 100s of prompts
RESAMPLES = 2000
# what a comparison table shows, for the titles and captions of every place that writes one
CAPTION = "each prompt at its fastest repeat; 90% bootstrap interval over prompts"


@attrs.frozen
class RunTiming:
    """One timed run as a saved benchmark stores it (the JSON `records`)."""

    method: str
    category: str
    question_id: int
    repeat: int
    tokens: int
    seconds: float


@attrs.frozen
class Comparison:
    """`method`'s speed over `reference`'s on one category ("all": every prompt)."""

    method: str
    reference: str
    category: str
    prompts: int
    ratio: float  # tokens/s over the reference's on the same prompts, each at its fastest repeat
    median: float  # median of the per-prompt ratios
    low: float  # bootstrap interval of `ratio` over prompts (`level`, two-sided)
    high: float
    worst: float  # the lowest per-prompt ratio

    def to_dict(self) -> dict:
        return attrs.asdict(self)


COLUMNS = (
    ("method", "method", "{}"),
    ("reference", "over", "{}"),
    ("category", "category", "{}"),
    ("prompts", "prompts", "{}"),
    ("ratio", "ratio", "{:.2f}"),
    ("low", "90% low", "{:.2f}"),
    ("high", "90% high", "{:.2f}"),
    ("median", "median", "{:.2f}"),
    ("worst", "worst prompt", "{:.2f}"),
)


def timings_from_json(payload: dict) -> list[RunTiming]:
    """The runs of a saved `specdec bench` JSON (its `records`)."""
    try:
        return [
            RunTiming(r["method"], r["category"], int(r["question_id"]), int(r["repeat"]), int(r["tokens"]), float(r["seconds"]))
            for r in payload["records"]
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigurationError(f"not a specdec bench result (records with method, category, question_id, repeat, tokens, seconds): {error}") from None


def compare(
    records: Sequence[Timed], method: str, reference: str, *, level: float = 0.9, resamples: int = RESAMPLES, seed: int = 0
) -> list[Comparison]:
    """`method` over `reference` per category and over all prompts (resampled within categories)."""
    if not 0.0 < level < 1.0:
        raise ConfigurationError(f"level must be in (0, 1), got {level}")
    fastest = fastest_repeats(records)
    for name in (method, reference):
        if not any(m == name for m, _, _ in fastest):
            known = ", ".join(sorted({m for m, _, _ in fastest}))
            raise ConfigurationError(f"method {name!r} is not in this run (it has: {known})")
    # per category: (method tokens, method seconds, reference tokens, reference seconds) per prompt
    pairs: dict[str, list[tuple[int, float, int, float]]] = {}
    for (name, category, question), (tokens, seconds) in fastest.items():
        other = fastest.get((reference, category, question))
        if name == method and other is not None:
            pairs.setdefault(category, []).append((tokens, seconds, *other))
    rng = random.Random(seed)
    results = []
    for category in sorted(pairs):
        results.append(_comparison(method, reference, category, {category: pairs[category]}, level, resamples, rng))
    if pairs:
        results.append(_comparison(method, reference, "all", pairs, level, resamples, rng))
    return results


def _comparison(
    method: str, reference: str, category: str, strata: dict[str, list[tuple[int, float, int, float]]],
    level: float, resamples: int, rng: random.Random,
) -> Comparison:
    prompts = [p for rows in strata.values() for p in rows]
    draws = sorted(_ratio([p for rows in strata.values() for p in rng.choices(rows, k=len(rows))]) for _ in range(resamples))
    tail = (1.0 - level) / 2
    per_prompt = [_ratio((prompt,)) for prompt in prompts]
    return Comparison(
        method=method,
        reference=reference,
        category=category,
        prompts=len(prompts),
        ratio=_ratio(prompts),
        median=statistics.median(per_prompt),
        low=draws[int(tail * (resamples - 1))],
        high=draws[int(round((1.0 - tail) * (resamples - 1)))],
        worst=min(per_prompt),
    )


def _ratio(prompts: Sequence[tuple[int, float, int, float]]) -> float:
    """Pooled tokens/s of the method over the reference's on the same prompts."""
    tokens, seconds, ref_tokens, ref_seconds = (sum(column) for column in zip(*prompts))
    return (tokens / seconds) / (ref_tokens / ref_seconds)
