"""Benchmark output: terminal table, JSON, Markdown and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from specdec.bench.runner import Summary

COLUMNS = (
    ("method", "method", "{}"),
    ("category", "category", "{}"),
    ("tokens_per_second", "tok/s", "{:.1f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("median_prompt_speedup", "median", "{:.2f}x"),
    ("fastest_repeat_speedup", "fastest", "{:.2f}x"),
    ("spread", "spread", "{:.2f}"),
    ("mean_accepted_length", "accepted len", "{:.2f}"),
    ("acceptance_rate", "accept rate", "{:.2f}"),
    ("target_forwards_per_token", "target fwd/tok", "{:.2f}"),
    ("draft_forwards_per_token", "draft fwd/tok", "{:.2f}"),
    ("overhead_fraction", "overhead", "{:.1%}"),
    ("policy_fraction", "policy", "{:.1%}"),
)


def cell(value, fmt: str) -> str:
    """A table cell: `fmt` applied, or "-" for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]] = COLUMNS) -> str:
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(row[key], fmt) for key, _, fmt in columns) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def print_table(rows: Sequence[dict], title: str, columns: Sequence[tuple[str, str, str]] = COLUMNS) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for _, heading, _ in columns:
        table.add_column(heading)
    for row in rows:
        table.add_row(*(cell(row[key], fmt) for key, _, fmt in columns))
    Console().print(table)


def cpu_cores(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """Physical cores (distinct physical id / core id pairs in /proc/cpuinfo), else None."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    return len(cores) or None


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def plot_speedups(summaries: Sequence[Summary], path: Path, title: str, baseline: str) -> None:
    """Grouped bars: speedup over the baseline, one group per category, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = sorted({s.category for s in summaries if s.category != "all"}) + ["all"]
    methods = [m for m in dict.fromkeys(s.method for s in summaries) if m != baseline]
    lookup = {(s.method, s.category): s.speedup for s in summaries}
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(categories)), 4.5))
    for i, method in enumerate(methods):
        xs = [c + (i - (len(methods) - 1) / 2) * width for c in range(len(categories))]
        ax.bar(xs, [lookup.get((method, c), float("nan")) for c in categories], width, label=method)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(categories)), categories, rotation=35, ha="right")
    ax.set_ylabel(f"speedup over {baseline}")
    ax.set_title(title)
    if methods:  # a run of the baseline alone has no bars to label
        ax.legend(fontsize=7, ncol=min(len(methods), 5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
