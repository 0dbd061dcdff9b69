"""Long first-run work says what it does and how long it took, on stderr only; nothing is said
when nothing long happens."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from specdec import progress
from specdec.progress import reporting
from tests.plugin_tools import REPO, TINY_DRAFT, TINY_TARGET, cli_env, tiny

PAIR = ["--target", tiny(TINY_TARGET), "--draft", tiny(TINY_DRAFT)]
DONE = re.compile(r"^specdec: (.+) in \d+\.\d s$")


def said(err: str) -> list[str]:
    """The lines `reporting` printed (a bar's redraws, separated by carriage returns, left out)."""
    return [part for line in err.splitlines() for part in line.split("\r") if part.startswith(progress.PREFIX)]


def test_work_is_announced_and_timed_on_stderr(capsys):
    with reporting("converting a to b", done="converted a", total=3) as report:
        for _ in range(3):
            report.advance()
    out, err = capsys.readouterr()
    assert out == ""
    lines = said(err)
    assert len(lines) == 2 and lines[0] == "specdec: converting a to b ..."
    assert DONE.match(lines[1]).group(1) == "converted a"


@pytest.mark.parametrize("disabled", [False, True])
def test_countable_steps_get_a_bar_unless_tqdm_is_disabled(disabled):
    code = "from specdec.progress import reporting\nwith reporting('converting', total=4) as r:\n    r.advance(4)\n"
    env = {key: value for key, value in cli_env().items() if key != "TQDM_DISABLE"}
    env.update({"TQDM_DISABLE": "1"} if disabled else {})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout == ""
    assert ("0/4" in done.stderr) is not disabled
    assert len(said(done.stderr)) == 2


def test_quick_work_is_silent(capsys):
    with reporting("loading something small", after=60.0):
        pass
    assert capsys.readouterr() == ("", "")


def test_usually_quick_work_is_reported_once_it_takes_a_while(capsys):
    with reporting("loading something slow", done="loaded it", after=0.01) as report:
        assert report.started.wait(30)  # the start line is printed while the work goes on
    lines = said(capsys.readouterr().err)
    assert lines[0] == "specdec: loading something slow ..." and DONE.match(lines[1]).group(1) == "loaded it"


def test_failed_work_gets_no_done_line(capsys):
    with pytest.raises(RuntimeError), reporting("converting"):
        raise RuntimeError("disk full")
    assert capsys.readouterr().err.splitlines() == ["specdec: converting ..."]


def test_gemm_timing_is_reported_per_shape(capsys, monkeypatch):
    from specdec.integrations import gemm_plans, projection

    if len(projection.usable_kernels(torch.float32)) < 2:
        pytest.skip("one GEMM kernel here: nothing is timed")
    monkeypatch.setenv("SPECDEC_GEMM", "fresh")
    monkeypatch.setattr(gemm_plans, "process_plans", {})
    projection.kernel_plan(24, 8)
    projection.kernel_plan(24, 8)  # looked up once per process
    out, err = capsys.readouterr()
    assert out == ""
    lines = said(err)
    assert err == "\n".join(lines) + "\n" and len(lines) == 2
    assert lines[0].startswith("specdec: timing the GEMM kernels for weight shape 24x8 (float32)")
    assert DONE.match(lines[1]).group(1) == "timed the GEMM kernels for 24x8 (float32)"


def test_loading_the_shipped_pacer_is_silent(capsys):
    from specdec.strategies.policies.pacer.policy import PacerPolicy

    PacerPolicy()
    assert capsys.readouterr().err == ""


@pytest.mark.slow  # times every weight shape of the tiny pair: seconds, far more on a busy machine
def test_a_cold_cache_reports_gemm_timing_on_stderr_and_a_warm_one_is_silent(tmp_path):
    command = [sys.executable, "-m", "specdec", "generate", "Once upon a time", *PAIR, "--max-new-tokens", "4", "--json"]
    env = {**cli_env(), "SPECDEC_CACHE": str(tmp_path), "SPECDEC_GEMM": "auto"}
    runs = [subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600) for _ in range(2)]
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["ids"]) == 4  # stdout: the JSON and nothing else
    cold = [line for line in runs[0].stderr.splitlines() if line.startswith("specdec: ")]
    assert cold and all("GEMM kernels for" in line for line in cold) and len(cold) % 2 == 0
    assert f"saved in {tmp_path / 'gemm-plans.json'}" in cold[0]
    assert not [line for line in runs[1].stderr.splitlines() if line.startswith("specdec: ")]


@pytest.mark.slow  # dequantises the default target's GGUF (about 20 s)
def test_a_gguf_conversion_says_what_it_converts_where(tmp_path):
    from specdec.defaults import default_target

    env = {**cli_env(), "SPECDEC_CACHE": str(tmp_path)}
    code = f"from specdec.integrations.loading import load_model; load_model({default_target()!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("specdec: ")]
    converted = tmp_path / "converted"
    assert lines[0].startswith("specdec: converting SmolLM2-135M-Instruct.Q4_1.gguf to safetensors in ")
    assert str(converted) in lines[0] and DONE.match(lines[1]).group(1) == "converted SmolLM2-135M-Instruct.Q4_1.gguf"


def test_progress_goes_to_the_stderr_of_the_moment(capsys):
    """A redirected stderr (a test's capture, a CLI's log) gets the lines, as it gets warnings."""
    with reporting("work"):
        pass
    assert capsys.readouterr().err.startswith(progress.PREFIX + "work ...")
