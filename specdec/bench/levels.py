"""What the reports of runs at several levels of parallelism share (`--engine vllm`'s requests in
flight, `--batch-size`'s batch sizes): the overall table of every method at every level and the
panel of tokens/s against the level."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from specdec.bench.report import cell

LEVEL_COLUMNS = (("tokens_per_second", "tokens/s", "{:.1f}"), ("speedup", "speedup", "{:.2f}x"),
                 ("mean_accepted_length", "accepted length", "{:.2f}"))  # fmt: skip


def levels_table(rows: Mapping[tuple[str, int], Mapping[str, Any]], methods: Sequence[str], levels: Sequence[int],
                 label: Callable[[int], str]) -> str:  # fmt: skip
    """Markdown: a line per method, tokens/s, speedup and accepted length at each level
    (`rows`: (method, level) -> a summary's dict; `label(level)` names a level in the header)."""
    from specdec.bench.page import _table

    lines = []
    for method in methods:
        line = [f"`{method}`"]
        for level in levels:
            found = rows.get((method, level), {})
            line += [cell(found.get(key), fmt) for key, _, fmt in LEVEL_COLUMNS]
        lines.append(line)
    header = ["method", *(f"{title} ({label(level)})" for level in levels for _, title, _ in LEVEL_COLUMNS)]
    return _table(header, lines)


def plot_rates(ax: Any, rates: Mapping[tuple[str, int], float], methods: Sequence[str], levels: Sequence[int],
               xlabel: str, ylabel: str) -> None:  # fmt: skip
    """Each method's tokens/s against the level on `ax` (a matplotlib axis), a method's color its
    position in `methods` (as in the report's other panels)."""
    for method in methods:
        ax.plot(levels, [rates.get((method, level), math.nan) for level in levels], marker="o", label=method,
                color=f"C{methods.index(method) % 10}")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(level) for level in levels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=min(len(methods), 4))


def save_figure(fig: Any, path: Path) -> None:
    """Lay out, write (creating the directory) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_level_page(run_path: Path, page_path: Path, plot: Callable[[Path], None], render: Callable[[str, str, str], str],
                     guide: str) -> Path:  # fmt: skip
    """Draw the plot beside the run file (NAME.png) with `plot(path)` and write the page that
    `render(run link, plot link, link to the cookbook page named guide)` returns; returns the plot's path."""
    from specdec.bench.page import _link

    plot_path = run_path.with_suffix(".png")
    plot(plot_path)
    text = render(_link(run_path, page_path), _link(plot_path, page_path), _link(page_path.parent / "cookbook" / guide, page_path))
    page_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.write_text(text)
    return plot_path
