"""The results page: one `specdec bench` run file rendered as a Markdown page and a PNG plot
(a run of `specdec bench --engine vllm` by `specdec.bench.vllm_report`, one of
`specdec bench --batch-size` by `specdec.bench.batch_report`).

    python -m specdec.bench.page docs/results/bench.json docs/benchmarks.md

reads the run file (what `specdec bench` writes as NAME.json), writes the speedup plot beside it
(NAME.png) and the page: hardware, versions, the command that produced the run, the overall
table, the speedup per category, the paired comparisons and the plot. `specdec bench --page PAGE`
does the same at the end of a run, so one command refreshes the page with fresh numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from specdec.bench.compare import CAPTION
from specdec.bench.report import cell, plot_speedups
from specdec.bench.runner import Summary

BASELINE = "target-only"
OVERALL = (
    ("method", "method", "`{}`"),
    ("tokens_per_second", "tokens/s", "{:.1f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("fastest_repeat_speedup", "speedup, fastest repeats", "{:.2f}x"),
    ("mean_accepted_length", "tokens per round", "{:.2f}"),
    ("target_forwards_per_token", "target forwards / token", "{:.2f}"),
    ("draft_forwards_per_token", "draft forwards / token", "{:.2f}"),
)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _categories(rows: Sequence[dict]) -> list[str]:
    return sorted({r["category"] for r in rows if r["category"] != "all"}) + ["all"]


def _link(target: Path, page: Path) -> str:
    return Path(os.path.relpath(target.resolve(), page.resolve().parent)).as_posix()


def setup_table(meta: dict, run_link: str, categories: int) -> str:
    versions = meta.get("versions") or {"torch": meta.get("torch")}
    cores = meta.get("cpu_cores")
    logical = meta.get("logical_cpus")
    threads = meta.get("torch_threads")
    hardware = meta.get("cpu", "unknown CPU")
    counts = [f"{cores} cores" if cores else None, f"{logical} logical CPUs" if logical else None,
              f"{threads} torch threads" if threads else None]
    if any(counts):
        hardware += ", " + ", ".join(c for c in counts if c)
    elif meta.get("machine"):
        hardware += f" ({meta['machine']})"
    rows = [
        ("run", f"{meta.get('date', '?').replace('T', ' ')}, run file [{Path(run_link).name}]({run_link})"),
        ("command", f"`{meta['command']}`" if meta.get("command") else "not recorded"),
        ("hardware", hardware),
        ("versions", ", ".join(f"{name} {version}" for name, version in versions.items() if version)),
        ("models", f"target `{meta.get('target', '?')}`, draft `{meta.get('draft', '?')}`"),
        ("prompts", f"Spec-Bench first turns {'with the chat template' if meta.get('chat', True) else 'as raw text'}, "
                    f"{meta.get('prompts_per_category', '?')} per category, {categories} categories"),
        ("decoding", f"{meta.get('mode', '?')}, {meta.get('max_new_tokens', '?')} new tokens, "
                     f"{meta.get('repeats', '?')} timed repeat(s) per prompt"),
        ("GEMM kernels", "; ".join(f"{shape}: {plan}" for shape, plan in (meta.get("gemm") or {}).items()) or "none measured"),
        ("peak memory", f"{meta['peak_rss_mib']:.0f} MiB" if meta.get("peak_rss_mib") else "not recorded"),
    ]
    return _table(("", ""), [(f"**{key}**", value) for key, value in rows])


def comparison_table(comparisons: Sequence[dict]) -> str:
    pairs = list(dict.fromkeys((c["method"], c["reference"]) for c in comparisons))
    cells = {(c["method"], c["reference"], c["category"]): c for c in comparisons}
    rows = []
    for category in _categories(comparisons):
        row = [category]
        for method, reference in pairs:
            c = cells.get((method, reference, category))
            row.append(f"{c['ratio']:.2f} ({c['low']:.2f}-{c['high']:.2f})" if c else "-")
        rows.append(row)
    return _table(["category", *(f"`{m}` over `{r}`" for m, r in pairs)], rows)


def render(run: dict, run_path: Path, page_path: Path, plot_path: Path, command: str) -> str:
    """The page's Markdown for the run file `run` (loaded), linked relative to `page_path`."""
    meta, summaries = run["meta"], run["summaries"]
    methods = list(dict.fromkeys(s["method"] for s in summaries))
    by_key = {(s["method"], s["category"]): s for s in summaries}
    overall = [[cell(by_key[(m, "all")].get(key), fmt) for key, _, fmt in OVERALL] for m in methods if (m, "all") in by_key]
    others = [m for m in methods if m != BASELINE]
    per_category = [
        [category, *(cell(by_key.get((m, category), {}).get("speedup"), "{:.2f}x") for m in others)]
        for category in _categories(summaries)
    ]
    parts = [
        "# Benchmarks",
        f"<!-- Generated from {_link(run_path, page_path)} by `{command}`; edit specdec/bench/page.py, not this page. -->",
        "Tokens per second of specdec's methods and of transformers' assisted generation (`hf-*`), over "
        f"plain decoding with the same target (`{BASELINE}`), measured by `specdec bench` in one run: every "
        "method decodes the same prompts one after another in one process, the order of the methods "
        "rotating from prompt to prompt, so that the ratios compare like with like. A run moves a "
        "category by a few percent; read the categories as indications and `all` as the summary. How to "
        f"read the columns: [Benchmarking and reading the plots]({_link(page_path.parent / 'cookbook' / 'benchmarking.md', page_path)}).",
        "## Setup",
        setup_table(meta, _link(run_path, page_path), len(_categories(summaries)) - 1),
    ]
    if meta.get("note"):
        parts.append(f"Note: {meta['note']}")
    parts += [
        "## Overall",
        "Speedup: tokens/s over `target-only`'s on the same prompts; with fastest repeats, each prompt timed "
        "by its fastest repeat (robust to the machine's stalls). Tokens per round: tokens per target forward.",
        _table([title for _, title, _ in OVERALL], overall),
        f"![speedup over {BASELINE} per category]({_link(plot_path, page_path)})",
        "## Speedup per category",
        _table(["category", *(f"`{m}`" for m in others)], per_category),
    ]
    if run.get("comparisons"):
        parts += ["## Paired comparisons", f"One method's tokens/s over another's on the same prompts ({CAPTION}).",
                  comparison_table(run["comparisons"])]
    return "\n\n".join(parts) + "\n"


def write_page(run_path: Path, page_path: Path, command: str | None = None) -> Path:
    """Write `page_path` and the plot beside the run file (NAME.png) from the run file; returns the plot's path."""
    import json

    run = json.loads(Path(run_path).read_text())
    command = command or f"python -m specdec.bench.page {Path(run_path).as_posix()} {Path(page_path).as_posix()}"
    if run["meta"].get("engine") == "vllm":
        from specdec.bench.vllm_report import write_vllm_page

        return write_vllm_page(run, Path(run_path), Path(page_path), command)
    if run["meta"].get("batch_sizes"):
        from specdec.bench.batch_report import write_batch_page

        return write_batch_page(run, Path(run_path), Path(page_path), command)
    plot_path = Path(run_path).with_suffix(".png")
    mode = run["meta"].get("mode", "")
    plot_speedups([Summary(**row) for row in run["summaries"]], plot_path, f"speedup over {BASELINE} ({mode})", BASELINE)
    Path(page_path).parent.mkdir(parents=True, exist_ok=True)
    Path(page_path).write_text(render(run, Path(run_path), Path(page_path), plot_path, command))
    return plot_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specdec.bench.page", description=__doc__.splitlines()[0])
    parser.add_argument("run_file", metavar="RUN.json", help="a `specdec bench` run file (either engine, or batches)")
    parser.add_argument("page", metavar="PAGE.md", help="the page to write (the plot goes beside the run file)")
    args = parser.parse_args(argv)
    plot = write_page(Path(args.run_file), Path(args.page))
    print(f"wrote {args.page} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
