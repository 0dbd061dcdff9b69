"""Run methods over prompts, interleaved per prompt so machine noise hits every method alike."""

from __future__ import annotations

import statistics
from typing import Protocol, Sequence

import attrs
from tqdm import tqdm

from specdec.bench.methods import Method, MethodRun
from specdec.bench.prompts import BenchPrompt


class Timed(Protocol):
    """What timing summaries read from a run: a `Record`, or a row of a saved run (`compare.py`)."""

    method: str
    category: str
    question_id: int
    tokens: int
    seconds: float


@attrs.frozen
class Record:
    method: str
    category: str
    question_id: int
    repeat: int
    prompt_tokens: int
    run: MethodRun

    @property
    def tokens(self) -> int:
        return len(self.run.ids)

    @property
    def seconds(self) -> float:
        return self.run.seconds


def run_benchmark(
    methods: Sequence[Method],
    prompts: Sequence[BenchPrompt],
    encode,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    repeats: int = 1,
    warmup: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> list[Record]:
    """Each prompt: every method in turn (after `warmup` untimed runs on the first prompt).

    The order of the methods rotates by one from prompt to prompt (and repeat to repeat), so that
    whatever running first or right after another method costs (allocator state, caches, clock
    changes) falls on every method alike instead of always on the same one.
    """
    encoded = [encode(p.text) for p in prompts]
    if warmup and encoded:
        for method in methods:
            for _ in range(warmup):
                method.run(encoded[0], min(16, max_new_tokens), temperature, seed)
    records: list[Record] = []
    total = len(prompts) * repeats * len(methods)
    quiet = {} if progress else {"disable": True}  # left unset, tqdm reads TQDM_DISABLE
    with tqdm(total=total, desc="benchmark", unit="run", **quiet) as bar:
        for repeat in range(repeats):
            for index, (prompt, ids) in enumerate(zip(prompts, encoded)):
                for method in rotated(methods, index + repeat):
                    bar.set_postfix_str(f"{prompt.category}: {method.name}")
                    run = method.run(ids, max_new_tokens, temperature, seed + repeat)
                    records.append(Record(method.name, prompt.category, prompt.question_id, repeat, len(ids), run))
                    bar.update()
    return records


def rotated(items: Sequence, shift: int) -> list:
    """`items` starting from position `shift` (mod its length), wrapping around."""
    if not items:
        return []
    shift %= len(items)
    return list(items[shift:]) + list(items[:shift])


@attrs.frozen
class Summary:
    """One method on one category (or "all")."""

    method: str
    category: str
    prompts: int
    tokens: int
    seconds: float
    tokens_per_second: float
    speedup: float  # tokens/s over the baseline's tokens/s on the same prompts, same run
    median_prompt_speedup: float  # median over prompts of per-prompt tokens/s ratios
    fastest_repeat_speedup: float  # as `speedup`, each prompt timed by its fastest repeat (robust to stalls)
    spread: float  # (max - min) of per-prompt speedups
    mean_accepted_length: float
    acceptance_rate: float
    target_forwards_per_token: float
    draft_forwards_per_token: float
    overhead_fraction: float  # specdec's own time (not in model forwards) over total time
    policy_fraction: float = float("nan")  # of which the policy's own (PACER's pre-verifier), over total time

    def to_dict(self) -> dict:
        return attrs.asdict(self)


def summarize(records: Sequence[Record], baseline: str) -> list[Summary]:
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.method, r.category), []).append(r)
        groups.setdefault((r.method, "all"), []).append(r)
    base_rate = {
        (r.category, r.question_id, r.repeat): r.tokens / r.run.seconds for r in records if r.method == baseline
    }
    fastest = fastest_repeats(records)
    summaries = []
    for (method, category), rs in groups.items():
        tokens = sum(r.tokens for r in rs)
        seconds = sum(r.run.seconds for r in rs)
        base = [x for x in records if x.method == baseline and (category == "all" or x.category == category)]
        base_tps = sum(x.tokens for x in base) / sum(x.run.seconds for x in base) if base else float("nan")
        base_fastest = fastest_rate(fastest, baseline, category)
        ratios = [
            (r.tokens / r.run.seconds) / base_rate[(r.category, r.question_id, r.repeat)]
            for r in rs
            if (r.category, r.question_id, r.repeat) in base_rate
        ]
        rounds = sum(r.run.rounds for r in rs)
        drafted = sum(r.run.drafted for r in rs)
        summaries.append(
            Summary(
                method=method,
                category=category,
                prompts=len(rs),
                tokens=tokens,
                seconds=seconds,
                tokens_per_second=tokens / seconds,
                speedup=(tokens / seconds) / base_tps,
                median_prompt_speedup=statistics.median(ratios) if ratios else float("nan"),
                fastest_repeat_speedup=fastest_rate(fastest, method, category) / base_fastest,
                spread=(max(ratios) - min(ratios)) if ratios else float("nan"),
                mean_accepted_length=tokens / rounds if rounds else float("nan"),
                acceptance_rate=sum(r.run.accepted for r in rs) / drafted if drafted else float("nan"),
                target_forwards_per_token=sum(r.run.target_forwards for r in rs) / tokens if rounds else float("nan"),
                draft_forwards_per_token=sum(r.run.draft_forwards for r in rs) / tokens if rounds else float("nan"),
                overhead_fraction=sum(r.run.overhead_seconds for r in rs) / seconds,
                policy_fraction=sum(r.run.policy_seconds for r in rs) / seconds,
            )
        )
    return summaries


def fastest_repeats(records: Sequence[Timed]) -> dict[tuple[str, str, int], tuple[int, float]]:
    """(method, category, prompt) -> (tokens, seconds) of its fastest repeat.

    A shared machine stalls now and then, and a stall can make one run two or three times slower;
    over `--repeats` runs of the same prompt the fastest is the least disturbed (as `timeit` takes
    the minimum), so sums of fastest repeats compare methods without the stalls' luck.
    """
    best: dict[tuple[str, str, int], tuple[int, float]] = {}
    for r in records:
        key = (r.method, r.category, r.question_id)
        if key not in best or r.seconds < best[key][1]:
            best[key] = (r.tokens, r.seconds)
    return best


def fastest_rate(fastest: dict[tuple[str, str, int], tuple[int, float]], method: str, category: str) -> float:
    """Tokens/s of `method` on `category` ("all": every prompt), each prompt at its fastest repeat."""
    runs = [run for (m, c, _), run in fastest.items() if m == method and (category == "all" or c == category)]
    seconds = sum(seconds for _, seconds in runs)
    return sum(tokens for tokens, _ in runs) / seconds if seconds else float("nan")
