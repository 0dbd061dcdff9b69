"""Prompt sets for benchmarks: Spec-Bench first turns, per category."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from specdec.defaults import models_dir


@attrs.frozen
class BenchPrompt:
    category: str
    question_id: int
    text: str


def spec_bench_path() -> Path:
    return models_dir().parent / "data" / "spec_bench.jsonl"


def load_spec_bench(path: str | Path | None = None, *, categories: list[str] | None = None, per_category: int = 3) -> list[BenchPrompt]:
    """The first `per_category` first-turn prompts of each category (file order, deterministic)."""
    rows = [json.loads(line) for line in open(path or spec_bench_path(), encoding="utf-8") if line.strip()]
    chosen: dict[str, list[BenchPrompt]] = {}
    for row in rows:
        category = row["category"]
        if categories and category not in categories:
            continue
        bucket = chosen.setdefault(category, [])
        if len(bucket) < per_category:
            bucket.append(BenchPrompt(category, int(row["question_id"]), row["turns"][0]))
    if categories:
        missing = sorted(set(categories) - set(chosen))
        if missing:
            raise ValueError(f"no prompts for categories {missing} in {path or spec_bench_path()}")
    return [p for bucket in chosen.values() for p in bucket]
