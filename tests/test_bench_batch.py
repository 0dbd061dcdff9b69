"""`specdec bench --batch-size` end to end on the tiny pair: three categories of prompts (mixed in
the batches), 8 tokens, batches of 1 and 2, specdec's loop without a proposer, fixed:k=2 and
transformers' batched greedy `generate`. The run file, the plot and the page agree with each
other: every summary is the sum of its batches, greedy output is the same tokens under every
method, the page regenerated from the run file is the page the run wrote; and the options'
one-line errors."""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex

import pytest

from specdec.bench import page
from specdec.bench.batch_runner import batches_of, mixed_order
from specdec.bench.prompts import BenchPrompt
from specdec.bench.spec import check_batchable, check_method
from specdec.cli import bench, main
from tests.plugin_tools import REPO
from tests.test_cli_errors import PAIR, assert_one_line_error

METHODS = ["target-only", "fixed:k=2", "hf-greedy"]
PROMPTS = {
    "story": ["Once upon a time, there was a little girl named Lily.", "The cat sat on the mat and looked at the sun."],
    "dialogue": ["Tom said to his mom, I want to play outside.", "The dog ran to the park. The dog ran to the park. The dog"],
    "short": ["One day", "Sue and Ben"],
}
PROMPT_COUNT = sum(len(texts) for texts in PROMPTS.values())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bench")
    prompts = root / "prompts.jsonl"
    rows = [{"category": c, "question_id": i, "turns": [t]} for c, texts in PROMPTS.items() for i, t in enumerate(texts)]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, page_path = root / "out", root / "docs" / "batches.md"
    code = main([
        "bench", *PAIR, "--prompts", str(prompts), "--per-category", "2", "--max-new-tokens", "8", "--batch-size", "1,2",
        "--methods", ";".join(METHODS), "--no-chat", "--out", str(out), "--page", str(page_path),
    ])  # fmt: skip
    assert code == 0
    return {"out": out, "page": page_path, "file": json.loads((out / "bench.json").read_text())}


def test_every_method_and_batch_size_is_summarized_from_its_batches(run):
    meta, summaries, records = run["file"]["meta"], run["file"]["summaries"], run["file"]["records"]
    assert meta["batch_sizes"] == [1, 2] and meta["methods"] == METHODS and meta["peak_rss_mib"] > 0
    assert [(s["batch_size"], s["method"]) for s in summaries] == [(size, m) for size in (1, 2) for m in METHODS]
    for s in summaries:
        mine = [r for r in records if (r["method"], r["batch_size"]) == (s["method"], s["batch_size"])]
        assert len(mine) == s["batches"] == math.ceil(PROMPT_COUNT / s["batch_size"])
        assert all(len(r["ids"]) == len(r["question_ids"]) <= s["batch_size"] for r in mine)
        assert s["prompts"] == PROMPT_COUNT and s["tokens"] == sum(len(row) for r in mine for row in r["ids"])
        assert s["seconds"] == pytest.approx(sum(r["seconds"] for r in mine))
        assert s["tokens_per_second"] == pytest.approx(s["tokens"] / s["seconds"])
        base = next(b for b in summaries if (b["method"], b["batch_size"]) == ("target-only", s["batch_size"]))
        assert s["speedup"] == pytest.approx(s["tokens_per_second"] / base["tokens_per_second"])
    pairs = [r for r in records if r["batch_size"] == 2]
    assert any(len(set(r["categories"])) > 1 for r in pairs)  # a batch mixes categories


def test_greedy_output_is_the_same_tokens_under_every_method(run):
    records = run["file"]["records"]
    outputs: dict[tuple[str, int, int], dict[str, list[int]]] = {}
    for r in records:
        for category, question, ids in zip(r["categories"], r["question_ids"], r["ids"]):
            outputs.setdefault((category, question, r["batch_size"]), {})[r["method"]] = ids
    assert len(outputs) == PROMPT_COUNT * 2
    for key, by_method in outputs.items():
        assert set(by_method) == set(METHODS)
        assert len(by_method["target-only"]) == 8, key
        assert by_method["fixed:k=2"] == by_method["target-only"], key  # exact: the verifier alone decides
        assert by_method["hf-greedy"] == by_method["target-only"], key  # left padding masked out
    overall = {(s["method"], s["batch_size"]): s for s in run["file"]["summaries"]}
    assert math.isnan(overall[("target-only", 2)]["mean_accepted_length"])
    assert overall[("fixed:k=2", 2)]["mean_accepted_length"] > 1.0 and overall[("fixed:k=2", 1)]["acceptance_rate"] > 0


def test_the_plot_and_the_page_come_from_the_run_file(run):
    plot = run["out"] / "bench.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = run["page"].read_text()
    assert "## Overall" in text and "tokens/s (batches of 2)" in text and "bench.png" in text
    for method in METHODS:
        assert f"`{method}`" in text
    assert page.main([str(run["out"] / "bench.json"), str(run["page"])]) == 0  # the documented command
    assert run["page"].read_text() == text


def test_the_batches_mix_categories_in_a_fixed_order():
    prompts = [BenchPrompt(c, i, t) for c, texts in PROMPTS.items() for i, t in enumerate(texts)]
    order = mixed_order(prompts)
    assert order == mixed_order(prompts) and sorted(order, key=prompts.index) == prompts and order != prompts
    assert batches_of(order, 4) == [order[:4], order[4:]]


# (arguments, what the error line says): each fails before any model is loaded
ERRORS = [
    (["--batch-size", "4,2"], ("--batch-size", "expected increasing whole numbers >= 1")),
    (["--batch-size", "0"], ("--batch-size", "expected increasing whole numbers >= 1")),
    (["--batch-size", "2", "--methods", "target-only;hf-assisted"], ("'hf-assisted' cannot decode a batch", "hf-greedy")),
    (["--batch-size", "2", "--methods", "hf-prompt-lookup"], ("'hf-prompt-lookup' cannot decode a batch",)),
    (["--batch-size", "2", "--methods", "fixd:k=2"], ("unknown policy 'fixd'",)),
    (["--batch-size", "2", "--methods", "oracle"], ("'oracle' cannot decode a batch", "each prompt's target output")),
    (["--batch-size", "2", "--compare", "fixed:k=2", "target-only"], ("--compare pairs prompts decoded one at a time",)),
    (["--batch-size", "2", "--engine", "vllm"], ("--batch-size decodes batches in specdec's own loop",)),
    (["--batch-size", "2", "--concurrency", "2"], ("--concurrency only apply with --engine vllm",)),
]


@pytest.mark.parametrize("args, says", ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_batch_options_are_one_line(args, says, capsys):
    try:
        code = main(["bench", *PAIR, *args])
    except SystemExit as done:  # argparse's own checks
        code = done.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert_one_line_error(captured.err, *says)


def test_the_documented_command_parses_records_itself_and_its_methods_batch():
    guide = (REPO / "docs" / "cookbook" / "benchmarking.md").read_text()
    [command] = re.findall(r"^`(specdec bench --batch-size [^`]*)`$", guide, re.M)
    parser = argparse.ArgumentParser(prog="specdec")
    bench.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(shlex.split(command)[1:])
    assert args.batch_size == [1, 4, 8, 16]
    for spec in args.methods.split(";"):
        check_method(spec)
        check_batchable(spec)
    again = parser.parse_args(shlex.split(bench.command_line(args))[1:])
    assert {k: v for k, v in vars(again).items() if k != "bench_parser"} == {k: v for k, v in vars(args).items() if k != "bench_parser"}
