"""Outputs of `specdec bench --engine vllm`: the terminal table, the plot and the results page.

The page comes from the run file alone (`python -m specdec.bench.page RUN.json PAGE.md` renders
either kind of run), so one command refreshes it with fresh numbers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from specdec.bench.levels import levels_table, plot_rates, save_figure, write_level_page
from specdec.bench.vllm_methods import TARGET_ONLY
from specdec.bench.vllm_runner import VllmSummary

COLUMNS = (
    ("method", "method", "{}"),
    ("concurrency", "concurrency", "{}"),
    ("category", "category", "{}"),
    ("tokens_per_second", "tok/s", "{:.1f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("mean_accepted_length", "accepted len", "{:.2f}"),
    ("acceptance_rate", "accept rate", "{:.2f}"),
)


def ordered(summaries: Sequence[VllmSummary], methods: Sequence[str]) -> list[VllmSummary]:
    """By concurrency, then category ("all" last), then the methods' order."""
    order = {m: i for i, m in enumerate(methods)}
    return sorted(summaries, key=lambda s: (s.concurrency, s.category == "all", s.category, order.get(s.method, len(order))))


def plot_vllm(summaries: Sequence[VllmSummary], path: Path, title: str) -> None:
    """One panel per concurrency (speedup over target-only per category, one bar per method) and
    one of every method's overall tokens/s against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({s.concurrency for s in summaries})
    categories = sorted({s.category for s in summaries if s.category != "all"}) + ["all"]
    methods = list(dict.fromkeys(s.method for s in summaries))
    others = [m for m in methods if m != TARGET_ONLY]
    lookup = {(s.method, s.category, s.concurrency): s for s in summaries}
    fig, axes = plt.subplots(len(levels) + 1, 1, figsize=(max(8, 1.1 * len(categories)), 3.2 * (len(levels) + 1)), squeeze=False)
    width = 0.8 / max(len(others), 1)
    for ax, level in zip(axes[:-1, 0], levels):
        for i, method in enumerate(others):
            xs = [c + (i - (len(others) - 1) / 2) * width for c in range(len(categories))]
            values = [getattr(lookup.get((method, c, level)), "speedup", math.nan) for c in categories]
            ax.bar(xs, values, width, label=method, color=f"C{methods.index(method) % 10}")
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(categories)), categories, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(f"speedup, {level} at once")
    if others:
        axes[0, 0].legend(fontsize=7, ncol=min(len(others), 4))
    axes[0, 0].set_title(title)
    rates = {(s.method, s.concurrency): s.tokens_per_second for s in summaries if s.category == "all"}
    plot_rates(axes[-1, 0], rates, methods, levels, "requests in flight", "output tokens/s, all")
    save_figure(fig, path)


def render_vllm(run: dict, run_link: str, plot_link: str, command: str, guide_link: str) -> str:
    """The results page's Markdown for a `specdec bench --engine vllm` run file (loaded)."""
    from specdec.bench.page import _categories, _table, setup_table
    from specdec.bench.report import cell

    meta, rows = run["meta"], run["summaries"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    levels = sorted({r["concurrency"] for r in rows})
    by_key = {(r["method"], r["category"], r["concurrency"]): r for r in rows}
    overall = {(r["method"], r["concurrency"]): r for r in rows if r["category"] == "all"}
    parts = [
        "# Benchmarks inside vLLM",
        f"<!-- Generated from {run_link} by `{command}`; edit specdec/bench/vllm_report.py, not this page. -->",
        "Output tokens per second of vLLM's own speculative methods (`vllm-*`) and of specdec's policies and "
        f"proposers run by vLLM through specdec's plugin, over vLLM without speculation (`{TARGET_ONLY}`), with 1 "
        "and more requests in flight, measured by `specdec bench --engine vllm` in one run: every method has its "
        "engine (specdec's methods share one, each request selecting its method), all engines stay up, and the "
        "methods take turns on the same waves of prompts, their order rotating from wave to wave. Accepted length: "
        f"tokens per verification of a request's draft, as vLLM counts it. How to read it: [specdec inside vLLM]({guide_link}).",
        "## Setup",
        setup_table(meta, run_link, len(_categories(rows)) - 1),
        "## Overall",
        levels_table(overall, methods, levels, lambda level: f"{level} at once"),
        f"![speedup over {TARGET_ONLY} per category and concurrency, and tokens/s against concurrency]({plot_link})",
    ]
    others = [m for m in methods if m != TARGET_ONLY]
    for level in levels:
        per_category = [
            [category, *(cell(by_key.get((m, category, level), {}).get("speedup"), "{:.2f}x") for m in others)]
            for category in _categories(rows)
        ]
        parts += [f"## Speedup per category, {level} at once", _table(["category", *(f"`{m}`" for m in others)], per_category)]
    return "\n\n".join(parts) + "\n"


def write_vllm_page(run: dict, run_path: Path, page_path: Path, command: str) -> Path:
    """Write `page_path` and the plot beside the run file (NAME.png); returns the plot's path."""
    summaries = [VllmSummary(**row) for row in run["summaries"]]
    return write_level_page(
        run_path, page_path, lambda path: plot_vllm(summaries, path, f"inside vLLM, {run['meta'].get('mode', '')}"),
        lambda run_link, plot_link, guide_link: render_vllm(run, run_link, plot_link, command, guide_link), "vllm.md",
    )
