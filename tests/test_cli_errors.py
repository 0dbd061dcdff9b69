"""A bad option value is one line, `specdec: error: ...` naming what is valid, exit code 2, and
never a traceback; the tiny pair, which has no chat template, runs `bench` and `ceiling`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specdec.cli import main
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET, run_cli, tiny

PAIR = ["--target", tiny(TINY_TARGET), "--draft", tiny(TINY_DRAFT)]
TINY_RUN = ["--categories", "writing", "--per-category", "1", "--max-new-tokens", "4", "--warmup", "0"]
CEILING_RUN = ["--categories", "writing", "--per-category", "1", "--max-new-tokens", "4"]
POLICIES = "available: adaedl, auto, confidence, fixed"
CATEGORIES = "holds: coding, extraction, humanities, math"


def _id(value: object) -> str | None:
    """The arguments of a case without the model paths, as its test id."""
    return " ".join(a for a in value if a not in PAIR) if isinstance(value, list) else None


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("Loading weights")]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert lines[0].startswith("specdec: error: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


# (arguments, what the error line says): each fails before any model is loaded
AS_A_USER = [
    (["bench", *PAIR, "--categories", "nosuch"], ("unknown category 'nosuch'", CATEGORIES)),
    (["bench", *PAIR, "--methods", "target-only;fixd:k=2"], ("unknown policy 'fixd'", POLICIES)),
    (["bench", *PAIR, "--per-category", "zero"], ("--per-category", "expected an integer >= 1, got 'zero'")),
    (["generate", "Once", *PAIR, "--policy", "nosuch"], ("unknown policy 'nosuch'", POLICIES)),
]


@pytest.mark.parametrize("args, says", AS_A_USER, ids=lambda v: _id(v))
def test_bad_values_from_the_command_line(args, says):
    done = run_cli(args, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.stderr, *says)


# in this process: every command's options, checked the same way (a traceback fails the test)
SWEEP = [
    (["generate", "Once", *PAIR, "--proposer", "nosuch"], ("unknown proposer 'nosuch'", "available: draft, eagle, ouroboros")),
    (["generate", "Once", *PAIR, "--policy-param", "k=abc"], ("parameter 'k' expects int, got 'abc'",)),
    (["generate", "Once", *PAIR, "--policy-param", "kk=3"], ("has no parameter 'kk'; parameters: k",)),
    (["generate", "Once", *PAIR, "--policy-param", "k"], ("parameters are KEY=VALUE, got 'k'",)),
    (["generate", "Once", *PAIR, "--proposer-param", "int8=maybe"], ("expects bool",)),
    (["generate", "Once", *PAIR, "--threads", "0"], ("--threads", "expected an integer >= 1, got '0'")),
    (["generate", "Once", *PAIR, "--max-new-tokens", "-1"], ("--max-new-tokens", "expected an integer >= 1")),
    (["generate", "Once", *PAIR, "--temperature", "nan"], ("--temperature", "expected a finite number >= 0")),
    (["generate", "Once", *PAIR, "--top-k", "0"], ("--top-k", "expected an integer >= 1")),
    (["generate", "Once", *PAIR, "--dtype", "int4"], ("--dtype", "invalid choice: 'int4'", "float32")),
    (["bench", *PAIR, "--methods", "fixed+draft:int8=maybe"], ("parameter 'int8' expects bool", "true/false")),
    (["ceiling", *PAIR, "--categories", "writing,nosuch"], ("unknown category 'nosuch'", CATEGORIES)),
    (["bench", *PAIR, "--methods", "hf-nosuch"], ("unknown transformers method 'hf-nosuch'", "hf-greedy")),
    (["bench", *PAIR, "--methods", "fixed+nosuch"], ("unknown proposer 'nosuch'", "available: draft")),
    (["bench", *PAIR, "--methods", "fixed:kk=3"], ("has no parameter 'kk'; parameters: k",)),
    (["bench", *PAIR, "--methods", "fixed:k"], ("method parameters are KEY=VALUE",)),
    (["bench", *PAIR, "--methods", "#label"], ("METHOD#LABEL",)),
    (["bench", *PAIR, "--repeats", "0"], ("--repeats", "expected an integer >= 1")),
    (["bench", *PAIR, "--warmup", "-1"], ("--warmup", "expected an integer >= 0")),
    (["bench", *PAIR, "--temperature", "-0.5"], ("--temperature", "expected a finite number >= 0")),
    (["bench", *PAIR, "--compare", "svip", "target-only"], ("--compare names methods that are not benchmarked: svip",)),
    (["bench", *PAIR, "--prompts", "/nonexistent/prompts.jsonl"], ("no prompt file at '/nonexistent/prompts.jsonl'",)),
    (["ceiling", *PAIR, "--ngram", "0"], ("--ngram", "expected an integer >= 1")),
    (["ceiling", *PAIR, "--copy-length", "x"], ("--copy-length", "expected an integer >= 1, got 'x'")),
    (["compare", "/nonexistent/bench.json", "--pair", "a", "b"], ("no bench result at",)),
    (["bench", *PAIR, "--out", "/proc/specdec-out"], ("--out: cannot create the directory '/proc/specdec-out'",)),
    (["ceiling", *PAIR, "--out", "/dev/null/out"], ("--out: cannot create the directory '/dev/null/out'",)),
    (["bench", *PAIR, "--page", "/dev/null/page.md"], ("--page: cannot create the directory '/dev/null'",)),
    (["compare", "run.json", "--pair", "a", "b", "--out", "/dev/null/x.md"], ("--out: cannot create the directory '/dev/null'",)),
    (["demo", *PAIR, "--policy", "nosuch"], ("unknown policy 'nosuch'", POLICIES)),
    (["demo", *PAIR, "--max-new-tokens", "0"], ("--max-new-tokens", "expected an integer >= 1")),
    (["plugins", "--kind", "nosuch"], ("--kind", "invalid choice: 'nosuch'", "policy")),
]


@pytest.mark.parametrize("args, says", SWEEP, ids=lambda v: _id(v))
def test_bad_values_of_every_command(args, says, capsys):
    try:
        code = main(args)
    except SystemExit as done:  # argparse's own checks
        code = done.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert_one_line_error(captured.err, *says)


JSON_ERRORS = [
    ["generate", "Once", *PAIR, "--json", "--policy", "nosuch"],  # raised by the command
    ["generate", "Once", *PAIR, "--json", "--top-k", "0"],  # an option's value, checked by the parser
    ["generate", "--json", *PAIR],  # no prompt
    ["generate", "Once", *PAIR, "--json", "--top-p", "2", "--temperature", "1"],  # checked when generating
    ["plugins", "--json", "--kind", "nosuch"],
]


@pytest.mark.parametrize("args", JSON_ERRORS, ids=_id)
def test_with_json_an_error_is_also_a_json_object_on_stdout(args, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err)
    [line] = [line for line in captured.err.splitlines() if line.startswith("specdec: error: ")]
    assert json.loads(captured.out) == {"error": line.removeprefix("specdec: error: ")}


def test_a_malformed_prompt_file_names_its_line(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"category": "writing", "question_id": 1, "turns": ["Hi"]}\nnot json\n')
    assert main(["ceiling", *PAIR, "--prompts", str(prompts)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{prompts} line 2 is not a Spec-Bench row")


def test_a_target_without_a_chat_template_gets_raw_text_with_a_note(tmp_path, capsys):
    assert main(["ceiling", *PAIR, *CEILING_RUN, "--out", str(tmp_path)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("specdec: note:")]
    assert notes == [f"specdec: note: {TINY_TARGET} has no chat template; sending the prompts as raw text (--no-chat)"]
    assert json.loads((tmp_path / "ceiling.json").read_text())["meta"]["chat"] is False


@pytest.mark.slow  # a fresh interpreter importing transformers: about 10 s on 2 busy cores
def test_bench_no_chat(tmp_path: Path):
    done = run_cli(["bench", *PAIR, *TINY_RUN, "--methods", "target-only;fixed:k=2", "--no-chat", "--out", str(tmp_path)])
    assert "specdec: note" not in done.stderr and "Traceback" not in done.stderr
    run = json.loads((tmp_path / "bench.json").read_text())
    assert run["meta"]["chat"] is False and "--no-chat" in run["meta"]["command"]
    assert {r["method"] for r in run["records"]} == {"target-only", "fixed:k=2"}
    assert all(r["tokens"] == 4 for r in run["records"])


def test_ceiling_no_chat(tmp_path: Path):
    done = run_cli(["ceiling", *PAIR, *CEILING_RUN, "--no-chat", "--out", str(tmp_path)])
    assert "specdec: note" not in done.stderr and "Traceback" not in done.stderr
    run = json.loads((tmp_path / "ceiling.json").read_text())
    assert run["meta"]["chat"] is False and [r["category"] for r in run["records"]] == ["writing"]
    assert "prompts as raw text" in (tmp_path / "ceiling.md").read_text()


def test_a_run_of_the_baseline_alone_is_plotted(tmp_path: Path):
    """`specdec bench --methods target-only` (nothing to compare) still writes its chart."""
    from specdec.bench.methods import MethodRun
    from specdec.bench.report import plot_speedups
    from specdec.bench.runner import Record, summarize

    records = [Record("target-only", "writing", 1, 0, 5, MethodRun((1, 2, 3), 0.5, rounds=3, target_forwards=3))]
    plot_speedups(summarize(records, "target-only"), tmp_path / "bench.png", "speedup", "target-only")
    assert (tmp_path / "bench.png").stat().st_size > 0
