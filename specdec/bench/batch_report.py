"""Outputs of `specdec bench --batch-size`: the terminal table, the plot and the results page.

The page comes from the run file alone (`python -m specdec.bench.page RUN.json PAGE.md` renders
any kind of run), so one command refreshes it with fresh numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from specdec.bench.batch_runner import BatchSummary
from specdec.bench.levels import levels_table, plot_rates, save_figure, write_level_page

BASELINE = "target-only"
COLUMNS = (
    ("method", "method", "{}"),
    ("batch_size", "batch size", "{}"),
    ("prompts", "prompts", "{}"),
    ("tokens_per_second", "tok/s", "{:.1f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("mean_accepted_length", "accepted len", "{:.2f}"),
    ("acceptance_rate", "accept rate", "{:.2f}"),
)


def plot_batches(summaries: Sequence[BatchSummary], path: Path, title: str) -> None:
    """Every method's output tokens/s against the batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(s.method for s in summaries))
    sizes = sorted({s.batch_size for s in summaries})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    plot_rates(ax, {(s.method, s.batch_size): s.tokens_per_second for s in summaries}, methods, sizes,
               "prompts per batch", "output tokens/s")  # fmt: skip
    ax.set_title(title)
    save_figure(fig, path)


def render_batch(run: dict, run_link: str, plot_link: str, command: str, guide_link: str) -> str:
    """The results page's Markdown for a `specdec bench --batch-size` run file (loaded)."""
    from specdec.bench.page import _table, setup_table
    from specdec.bench.report import cell

    meta, rows = run["meta"], run["summaries"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sizes = sorted({r["batch_size"] for r in rows})
    by_key = {(r["method"], r["batch_size"]): r for r in rows}
    categories = len({c for record in run["records"] for c in record["categories"]})
    rates = [[f"`{m}`", *(cell(by_key.get((m, size), {}).get("acceptance_rate"), "{:.2f}") for size in sizes)] for m in methods]
    return "\n\n".join([
        "# Benchmarks in batches",
        f"<!-- Generated from {run_link} by `{command}`; edit specdec/bench/batch_report.py, not this page. -->",
        "Output tokens per second of specdec's methods and of transformers' `generate` (`hf-greedy`) decoding "
        f"batches of prompts together, over specdec's loop without a proposer (`{BASELINE}`) at the same batch "
        "size, measured by `specdec bench --batch-size` in one run: the prompts, every category mixed in one "
        "fixed order, are cut into batches, every method decodes every batch in turn (the order rotating "
        "from batch to batch) and each batch is timed whole. Accepted length: tokens per round of a row. "
        f"How to read it: [Benchmarking]({guide_link}).",
        "## Setup",
        setup_table(meta, run_link, categories),
        "## Overall",
        levels_table(by_key, methods, sizes, lambda size: f"batches of {size}"),
        f"![output tokens/s against the batch size]({plot_link})",
        "## Acceptance rate",
        _table(["method", *(f"batches of {size}" for size in sizes)], rates),
    ]) + "\n"  # fmt: skip


def write_batch_page(run: dict, run_path: Path, page_path: Path, command: str) -> Path:
    """Write `page_path` and the plot beside the run file (NAME.png); returns the plot's path."""
    summaries = [BatchSummary(**row) for row in run["summaries"]]
    return write_level_page(
        run_path, page_path, lambda path: plot_batches(summaries, path, f"batches, {run['meta'].get('mode', '')}"),
        lambda run_link, plot_link, guide_link: render_batch(run, run_link, plot_link, command, guide_link), "benchmarking.md",
    )
