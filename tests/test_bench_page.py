"""The results page: rendered from one synthetic run file, and the command that wrote a run."""

from __future__ import annotations

import argparse
import json
import shlex

import pytest

from specdec.bench.page import main as page_main
from specdec.cli import bench


def _summary(method: str, category: str, speedup: float, tps: float, accepted: float) -> dict:
    return {"method": method, "category": category, "prompts": 2, "tokens": 128, "seconds": 128 / tps,
            "tokens_per_second": tps, "speedup": speedup, "median_prompt_speedup": speedup,
            "fastest_repeat_speedup": speedup + 0.01, "spread": 0.1, "mean_accepted_length": accepted,
            "acceptance_rate": float("nan") if method == "target-only" else 0.6,
            "target_forwards_per_token": 1 / accepted, "draft_forwards_per_token": 0.0 if method == "target-only" else 0.8,
            "overhead_fraction": 0.01, "policy_fraction": float("nan")}


RUN = {
    "meta": {
        "date": "2031-01-02T03:04:05", "machine": "x86_64, 3 torch threads", "cpu": "Example CPU 9000",
        "cpu_cores": 6, "logical_cpus": 12, "torch_threads": 3,
        "command": "specdec bench --per-category 2 --methods 'target-only;svip' --out results --page bench.md",
        "versions": {"specdec": "9.9.9", "torch": "8.8.8", "transformers": "7.7.7", "python": "3.99"},
        "target": "tiny-target", "draft": "tiny-draft", "gemm": {"4x4": "linear from 1 row"}, "torch": "8.8.8",
        "mode": "greedy", "prompts_per_category": 2, "max_new_tokens": 64, "repeats": 1, "peak_rss_mib": 512.4,
        "methods": ["target-only", "svip"],
    },
    "summaries": [
        _summary("target-only", "qa", 1.0, 20.0, 1.0), _summary("svip", "qa", 1.23, 24.6, 1.5),
        _summary("target-only", "rag", 1.0, 10.0, 1.0), _summary("svip", "rag", 0.87, 8.7, 1.2),
        _summary("target-only", "all", 1.0, 15.0, 1.0), _summary("svip", "all", 1.11, 16.65, 1.35),
    ],
    "comparisons": [
        {"method": "svip", "reference": "target-only", "category": c, "prompts": 2, "ratio": r, "median": r,
         "low": r - 0.05, "high": r + 0.05, "worst": r - 0.1}
        for c, r in (("qa", 1.24), ("rag", 0.88), ("all", 1.12))
    ],
    "records": [],
}


@pytest.fixture
def page(tmp_path):
    run_file = tmp_path / "docs" / "results" / "bench.json"
    run_file.parent.mkdir(parents=True)
    run_file.write_text(json.dumps(RUN))
    page_file = tmp_path / "docs" / "benchmarks.md"
    assert page_main([str(run_file), str(page_file)]) == 0
    return page_file


def _row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


def test_the_page_shows_where_what_and_how_the_run_was_made(page):
    text = page.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "2031-01-02 03:04:05" in text and "[bench.json](results/bench.json)" in text
    assert f"`{RUN['meta']['command']}`" in text
    assert "Example CPU 9000, 6 cores, 12 logical CPUs, 3 torch threads" in text
    assert "specdec 9.9.9, torch 8.8.8, transformers 7.7.7" in text
    assert "target `tiny-target`, draft `tiny-draft`" in text and "2 per category, 2 categories" in text
    assert "greedy, 64 new tokens" in text and "4x4: linear from 1 row" in text and "512 MiB" in text


def test_the_page_tables_and_plot_come_from_the_run_file(page):
    text = page.read_text()
    assert _row(text, "`svip`") == ["`svip`", "16.6", "1.11x", "1.12x", "1.35", "0.74", "0.80"]
    assert _row(text, "`target-only`")[1:3] == ["15.0", "1.00x"]
    lines = text.splitlines()
    per_category = lines.index("## Speedup per category")
    assert _row("\n".join(lines[per_category:]), "qa") == ["qa", "1.23x"]
    assert _row("\n".join(lines[per_category:]), "rag") == ["rag", "0.87x"]
    assert _row("\n".join(lines[per_category:]), "all") == ["all", "1.11x"]
    paired = lines.index("## Paired comparisons")
    assert _row("\n".join(lines[paired:]), "rag") == ["rag", "0.88 (0.83-0.93)"]
    assert "`svip` over `target-only`" in text
    assert "![speedup over target-only per category](results/bench.png)" in text
    assert (page.parent / "results" / "bench.png").stat().st_size > 0


def test_a_bench_run_records_the_command_that_makes_it_again():
    parser = argparse.ArgumentParser(prog="specdec")
    bench.add_parser(parser.add_subparsers(dest="command"))
    argv = ["bench", "--per-category", "5", "--methods", "target-only;auto", "--compare", "auto", "target-only",
            "--out", "docs/results", "--page", "docs/benchmarks.md"]
    args = parser.parse_args(argv)
    command = bench.command_line(args)
    words = shlex.split(command)
    assert words[:2] == ["specdec", "bench"]
    again = parser.parse_args(words[1:])
    assert {k: v for k, v in vars(again).items() if k != "bench_parser"} == {k: v for k, v in vars(args).items() if k != "bench_parser"}
    assert "--repeats" not in words and "--name" not in words  # defaults are left out
