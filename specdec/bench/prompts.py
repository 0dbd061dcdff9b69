"""Prompt sets for benchmarks: Spec-Bench first turns, per category."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from specdec.defaults import models_dir
from specdec.errors import ConfigurationError


@attrs.frozen
class BenchPrompt:
    category: str
    question_id: int
    text: str


def spec_bench_path() -> Path:
    return models_dir().parent / "data" / "spec_bench.jsonl"


def load_spec_bench(path: str | Path | None = None, *, categories: list[str] | None = None, per_category: int = 3) -> list[BenchPrompt]:
    """The first `per_category` first-turn prompts of each category (file order, deterministic).

    A missing or malformed file and a category the file does not hold are `ConfigurationError`s
    naming the file (and the categories it holds)."""
    if isinstance(per_category, bool) or not isinstance(per_category, int) or per_category < 1:
        raise ConfigurationError(f"per_category must be an integer >= 1, got {per_category!r}")
    source = Path(path) if path else spec_bench_path()
    prompts = _read_prompts(source)
    if not prompts:
        raise ConfigurationError(f"the prompt file {str(source)!r} holds no prompts; pass a Spec-Bench JSONL file (--prompts)")
    chosen: dict[str, list[BenchPrompt]] = {}
    for prompt in prompts:
        if categories and prompt.category not in categories:
            continue
        bucket = chosen.setdefault(prompt.category, [])
        if len(bucket) < per_category:
            bucket.append(prompt)
    if categories:
        missing = [c for c in dict.fromkeys(categories) if c not in chosen]
        if missing:
            held = ", ".join(sorted({prompt.category for prompt in prompts}))
            noun = "category" if len(missing) == 1 else "categories"
            raise ConfigurationError(f"unknown {noun} {', '.join(map(repr, missing))}; {source} holds: {held}")
    return [p for bucket in chosen.values() for p in bucket]


def _read_prompts(source: Path) -> list[BenchPrompt]:
    """Every row's first turn, in file order."""
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigurationError(f"no prompt file at {str(source)!r}; pass --prompts FILE (Spec-Bench JSONL)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"cannot read the prompt file {str(source)!r}: {error}") from None
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            category, question, turns = row["category"], int(row["question_id"]), row["turns"]
            if not (isinstance(category, str) and isinstance(turns, list) and isinstance(turns[0], str)):
                raise TypeError(row)
            prompts.append(BenchPrompt(category, question, turns[0]))
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):
            raise ConfigurationError(
                f"{source} line {number} is not a Spec-Bench row (JSON with category, question_id and turns)"
            ) from None
    return prompts
