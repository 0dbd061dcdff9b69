"""`specdec bench --engine vllm` without an engine: what each method asks of vLLM, the one-line
errors before anything starts, the summaries' arithmetic, and the command recorded in a run file."""

from __future__ import annotations

import argparse
import math
import shlex

import pytest

from specdec.bench.vllm_hosts import WaveResult
from specdec.bench.vllm_methods import VllmMethod, vllm_method
from specdec.bench.vllm_runner import run_waves, summarize_waves
from specdec.cli import bench
from specdec.errors import ConfigurationError, PluginError


@pytest.mark.parametrize(
    "spec, method",
    [
        ("target-only", VllmMethod("target-only")),
        ("vllm-ngram", VllmMethod("vllm-ngram", {"method": "ngram", "num_speculative_tokens": 4})),
        ("vllm-ngram:k=3,min=2,max=4", VllmMethod("vllm-ngram:k=3,min=2,max=4", {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_min": 2, "prompt_lookup_max": 4})),
        ("vllm-draft:k=2", VllmMethod("vllm-draft:k=2", {"method": "draft_model", "model": "/d", "num_speculative_tokens": 2})),
        ("vllm-draft-schedule:5-16=2,1-1=4,2-4=3", VllmMethod("vllm-draft-schedule:5-16=2,1-1=4,2-4=3", {
            "method": "draft_model", "model": "/d", "num_speculative_tokens": 4,
            "num_speculative_tokens_per_batch_size": [[1, 1, 4], [2, 4, 3], [5, 16, 2]]})),
        ("svip", VllmMethod("svip", strategies={"policy": "svip", "proposer": "draft", "policy_params": {}, "proposer_params": {}})),
        ("fixed:k=3+prompt-lookup#again", VllmMethod("fixed:k=3+prompt-lookup#again", strategies={
            "policy": "fixed", "proposer": "prompt-lookup", "policy_params": {"k": 3}, "proposer_params": {}})),
    ],
)  # fmt: skip
def test_each_method_names_its_engine_or_its_strategies(spec, method):
    assert vllm_method(spec, "/d") == method


@pytest.mark.parametrize(
    "spec, error, words",
    [
        ("hf-assisted", ConfigurationError, "runs with --engine specdec"),
        ("fixed:k=2@coupled", ConfigurationError, "@coupled"),
        ("vllm-eagle", ConfigurationError, "unknown vLLM method 'vllm-eagle'"),
        ("vllm-ngram:k=0", ConfigurationError, "k must be a whole number >= 1"),
        ("vllm-ngram:min=5,max=2", ConfigurationError, "min must be at most max"),
        ("vllm-draft:min=2", ConfigurationError, "vllm-draft takes k"),
        ("vllm-draft-schedule", ConfigurationError, "needs its schedule"),
        ("vllm-draft-schedule:1-4=3,3-8=2", ConfigurationError, "not overlap"),
        ("vllm-draft-schedule:4=3", ConfigurationError, "A-B=N"),
        ("nope", PluginError, "unknown policy 'nope'"),
        ("fixed:kk=2", ConfigurationError, "no parameter 'kk'"),
        ("#x", ConfigurationError, "METHOD#LABEL"),
    ],
)
def test_a_bad_method_is_a_one_line_error(spec, error, words):
    with pytest.raises(error) as caught:
        vllm_method(spec, "/d")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specdec")
    bench.add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_the_run_file_records_the_command_that_makes_it_again():
    argv = ["bench", "--engine", "vllm", "--concurrency", "1,4,16", "--no-chat", "--compile", "--methods", "target-only;vllm-draft-schedule:1-1=4,2-16=2;svip",
            "--num-speculative-tokens", "6", "--out", "bench-out", "--name", "vllm", "--page", "bench-out/vllm-page.md"]
    args = _parser().parse_args(argv)
    words = shlex.split(bench.command_line(args))
    again = _parser().parse_args(words[1:])
    assert {k: v for k, v in vars(again).items() if k != "bench_parser"} == {k: v for k, v in vars(args).items() if k != "bench_parser"}


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--concurrency", "4,1"], "increasing whole numbers"),
        (["--concurrency", "0"], "increasing whole numbers"),
    ],
)
def test_bad_concurrency_is_refused_by_the_parser(argv, words, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["bench", "--engine", "vllm", *argv])
    assert words in capsys.readouterr().err


def test_vllm_options_without_the_vllm_engine_are_refused():
    args = _parser().parse_args(["bench", "--concurrency", "1,2", "--num-speculative-tokens", "4"])
    with pytest.raises(ConfigurationError, match="--concurrency, --num-speculative-tokens only apply with --engine vllm"):
        bench.run(args)


def test_waves_rotate_the_methods_and_summaries_add_them_up():
    """Each (concurrency, category) wave is served by every method, the first method moving on by
    one from wave to wave; a summary is the sum of its waves, its speedup over target-only's."""
    calls: list[tuple[str, int, int]] = []

    def serve(method, prompts, level, max_tokens):
        calls.append((method, level, max_tokens))
        tokens = {"target-only": 10, "svip": 12}[method]
        return WaveResult(tuple([tokens] * len(prompts)), {"target-only": 2.0, "svip": 1.0}[method] * level, drafts=3 if method == "svip" else 0, draft_tokens=8, accepted=6)

    prompts = {"a": [[1, 2], [3]], "b": [[4]]}
    waves = run_waves(["target-only", "svip"], serve, prompts, [1, 2], max_new_tokens=32, warmup=1, progress=False)
    assert calls[:2] == [("target-only", 2, 16), ("svip", 2, 16)]  # warm-up: highest concurrency, 16 tokens
    order = [w.method for w in waves]
    assert order == ["target-only", "svip", "svip", "target-only", "target-only", "svip", "svip", "target-only"]
    summaries = {(s.method, s.category, s.concurrency): s for s in summarize_waves(waves)}
    a1 = summaries[("svip", "a", 1)]
    assert (a1.requests, a1.tokens, a1.seconds, a1.tokens_per_second, a1.speedup) == (2, 24, 1.0, 24.0, 2.4)
    assert a1.mean_accepted_length == 3.0 and a1.acceptance_rate == 0.75
    every = summaries[("svip", "all", 2)]
    assert (every.tokens, every.seconds, every.speedup) == (36, 4.0, pytest.approx((36 / 4) / (30 / 8)))
    assert math.isnan(summaries[("target-only", "all", 1)].mean_accepted_length)
