"""Run methods over batches of prompts at several batch sizes and summarize tokens/s per method
and batch size (`specdec bench --batch-size`).

The prompts, every category mixed in one fixed shuffled order, are cut into batches of B; each
batch is decoded by every method in turn, the order of the methods rotating from batch to batch
(`specdec.bench.runner.rotated`) as `specdec bench` rotates them from prompt to prompt, and each
batch is timed whole, wall-clock: what a server decoding B requests together gets.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import attrs
from tqdm import tqdm

from specdec.bench.methods import BatchMethod
from specdec.bench.prompts import BenchPrompt
from specdec.bench.runner import rotated

ORDER_SEED = 0  # the shuffle of the prompts: the same order in every run


@attrs.frozen
class EncodedPrompt:
    category: str
    question_id: int
    ids: tuple[int, ...]


@attrs.frozen
class BatchRecord:
    """One method decoding one batch (one repeat): its rows' prompts, new ids and counts."""

    method: str
    batch_size: int
    batch: int  # the batch's position among this batch size's batches
    repeat: int
    categories: tuple[str, ...]
    question_ids: tuple[int, ...]
    prompt_tokens: tuple[int, ...]
    ids: tuple[tuple[int, ...], ...]
    seconds: float
    rounds: int
    drafted: int
    accepted: int
    target_forwards: int
    draft_forwards: int

    @property
    def tokens(self) -> int:
        return sum(len(row) for row in self.ids)


def mixed_order(prompts: Sequence[BenchPrompt]) -> list[BenchPrompt]:
    """`prompts` in a fixed shuffled order, so that a batch mixes categories."""
    order = list(prompts)
    random.Random(ORDER_SEED).shuffle(order)
    return order


def batches_of(items: Sequence, size: int) -> list[list]:
    """`items` cut into consecutive batches of `size` (the last one may be shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def run_batches(
    methods: Sequence[BatchMethod],
    prompts: Sequence[EncodedPrompt],
    batch_sizes: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    repeats: int = 1,
    warmup: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> list[BatchRecord]:
    """Every method on every batch of every batch size, `repeats` times, after `warmup` untimed runs
    per method (the first batch at the largest size, 16 tokens at most)."""
    if warmup and prompts:
        first = [p.ids for p in prompts[: max(batch_sizes)]]
        for method in methods:
            for _ in range(warmup):
                method.run_batch(first, min(16, max_new_tokens), temperature, seed)
    records: list[BatchRecord] = []
    cut = {size: batches_of(prompts, size) for size in batch_sizes}
    total = repeats * len(methods) * sum(len(batches) for batches in cut.values())
    quiet = {} if progress else {"disable": True}  # left unset, tqdm reads TQDM_DISABLE
    shift = 0
    with tqdm(total=total, desc="benchmark", unit="batch", **quiet) as bar:
        for repeat in range(repeats):
            for size in batch_sizes:
                for index, batch in enumerate(cut[size]):
                    for method in rotated(methods, shift):
                        bar.set_postfix_str(f"batch of {size}: {method.name}")
                        run = method.run_batch([p.ids for p in batch], max_new_tokens, temperature, seed + repeat)
                        records.append(BatchRecord(
                            method.name, size, index, repeat, tuple(p.category for p in batch),
                            tuple(p.question_id for p in batch), tuple(len(p.ids) for p in batch), run.ids, run.seconds,
                            run.rounds, run.drafted, run.accepted, run.target_forwards, run.draft_forwards,
                        ))  # fmt: skip
                        bar.update()
                    shift += 1
    return records


@attrs.frozen
class BatchSummary:
    """One method at one batch size, over all its batches."""

    method: str
    batch_size: int
    batches: int
    prompts: int
    tokens: int
    seconds: float
    tokens_per_second: float
    speedup: float  # tokens/s over target-only's at the same batch size, on the same batches
    mean_accepted_length: float  # tokens per round of a row (target-only: NaN)
    acceptance_rate: float  # accepted / drafted tokens

    def to_dict(self) -> dict:
        return attrs.asdict(self)


def summarize_batches(records: Sequence[BatchRecord], baseline: str, methods: Sequence[str]) -> list[BatchSummary]:
    """By batch size, then the methods' order."""
    groups: dict[tuple[str, int], list[BatchRecord]] = {}
    for r in records:
        groups.setdefault((r.method, r.batch_size), []).append(r)

    def rate(rs: Sequence[BatchRecord]) -> float:
        seconds = sum(r.seconds for r in rs)
        return sum(r.tokens for r in rs) / seconds if seconds else math.nan

    order = {m: i for i, m in enumerate(methods)}
    summaries = []
    for (method, size), rs in sorted(groups.items(), key=lambda item: (item[0][1], order.get(item[0][0], len(order)))):
        base = groups.get((baseline, size), [])
        tokens, rounds, drafted = sum(r.tokens for r in rs), sum(r.rounds for r in rs), sum(r.drafted for r in rs)
        summaries.append(BatchSummary(
            method=method, batch_size=size, batches=len(rs), prompts=sum(len(r.ids) for r in rs), tokens=tokens,
            seconds=sum(r.seconds for r in rs), tokens_per_second=rate(rs), speedup=rate(rs) / rate(base) if base else math.nan,
            mean_accepted_length=tokens / rounds if rounds and drafted else math.nan,
            acceptance_rate=sum(r.accepted for r in rs) / drafted if drafted else math.nan,
        ))  # fmt: skip
    return summaries
