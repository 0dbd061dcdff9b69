"""Run methods inside vLLM at several concurrencies, interleaved so machine noise hits every
method alike, and summarize tokens/s per method, category and concurrency.

A wave serves one category's prompts on one method's engine with at most C requests in flight.
For each repeat, each concurrency and each category, every method serves the same wave in turn,
the order of the methods rotating from wave to wave (`specdec.bench.runner.rotated`), as
`specdec bench` rotates them from prompt to prompt.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import attrs
from tqdm import tqdm

from specdec.bench.runner import rotated
from specdec.bench.vllm_hosts import WaveResult
from specdec.bench.vllm_methods import TARGET_ONLY

Serve = Callable[[str, Sequence[Sequence[int]], int, int], WaveResult]  # (method, prompts, concurrency, max tokens)


@attrs.frozen
class Wave:
    """One method serving one category's prompts at one concurrency (one repeat)."""

    method: str
    category: str
    concurrency: int
    repeat: int
    requests: int
    tokens: int
    seconds: float
    drafts: int
    draft_tokens: int
    accepted: int


def run_waves(
    methods: Sequence[str],
    serve: Serve,
    prompts: Mapping[str, Sequence[Sequence[int]]],
    concurrency: Sequence[int],
    *,
    max_new_tokens: int,
    repeats: int = 1,
    warmup: int = 1,
    progress: bool = True,
) -> list[Wave]:
    """Every method on every (category, concurrency) wave, `repeats` times, after `warmup`
    untimed waves per method (the first category's prompts at the highest concurrency, 16 tokens)."""
    categories = list(prompts)
    if warmup and categories:
        for method in methods:
            for _ in range(warmup):
                serve(method, prompts[categories[0]], max(concurrency), min(16, max_new_tokens))
    waves: list[Wave] = []
    total = repeats * len(concurrency) * len(categories) * len(methods)
    quiet = {} if progress else {"disable": True}
    shift = 0
    with tqdm(total=total, desc="benchmark", unit="wave", **quiet) as bar:
        for repeat in range(repeats):
            for level in concurrency:
                for category in categories:
                    for method in rotated(methods, shift):
                        bar.set_postfix_str(f"{category} x{level}: {method}")
                        result = serve(method, prompts[category], level, max_new_tokens)
                        waves.append(Wave(
                            method, category, level, repeat, len(result.tokens), sum(result.tokens), result.seconds,
                            result.drafts, result.draft_tokens, result.accepted,
                        ))  # fmt: skip
                        bar.update()
                    shift += 1
    return waves


@attrs.frozen
class VllmSummary:
    """One method on one category (or "all") at one concurrency."""

    method: str
    category: str
    concurrency: int
    requests: int
    tokens: int
    seconds: float
    tokens_per_second: float
    speedup: float  # tokens/s over target-only's on the same waves
    mean_accepted_length: float  # tokens per verification of a request's draft: 1 + accepted / drafts
    acceptance_rate: float  # accepted / drafted tokens

    def to_dict(self) -> dict:
        return attrs.asdict(self)


def summarize_waves(waves: Sequence[Wave], baseline: str = TARGET_ONLY) -> list[VllmSummary]:
    groups: dict[tuple[str, str, int], list[Wave]] = {}
    for w in waves:
        groups.setdefault((w.method, w.category, w.concurrency), []).append(w)
        groups.setdefault((w.method, "all", w.concurrency), []).append(w)

    def rate(ws: Sequence[Wave]) -> float:
        seconds = sum(w.seconds for w in ws)
        return sum(w.tokens for w in ws) / seconds if seconds else math.nan

    summaries = []
    for (method, category, level), ws in groups.items():
        base = groups.get((baseline, category, level), [])
        drafts, drafted, accepted = (sum(getattr(w, key) for w in ws) for key in ("drafts", "draft_tokens", "accepted"))
        summaries.append(VllmSummary(
            method=method, category=category, concurrency=level, requests=sum(w.requests for w in ws),
            tokens=sum(w.tokens for w in ws), seconds=sum(w.seconds for w in ws), tokens_per_second=rate(ws),
            speedup=rate(ws) / rate(base) if base else math.nan,
            mean_accepted_length=1 + accepted / drafts if drafts else math.nan,
            acceptance_rate=accepted / drafted if drafted else math.nan,
        ))  # fmt: skip
    return summaries
