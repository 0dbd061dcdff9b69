"""`specdec serve` before any server starts: a bad option, a missing vLLM or a busy port is one
line on stderr and exit code 2, and nothing is started; the command it runs is vLLM's server
with specdec's options in its speculative config."""

from __future__ import annotations

import importlib.util
import json
import shlex
import socket
import subprocess
import sys

import psutil
import pytest
from specdec.integrations.vllm import VllmOptions
from specdec.integrations.vllm.options import NAME_PREFIX

from specdec.cli import main

SPECDEC = [sys.executable, "-c", "import sys; from specdec.cli import main; sys.exit(main())"]


def serve(capsys, *args: str) -> tuple[int, str, str, list[psutil.Process]]:
    """`specdec serve ARGS` in this process: exit code, stdout, stderr, and the processes it left
    behind as children of this one."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code = main(["serve", *args])
    out, err = capsys.readouterr()
    spawned = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    return code, out, err, spawned


@pytest.mark.parametrize(
    "args, words",
    [
        (["--policy", "nope"], "unknown policy 'nope'"),
        (["--proposer", "nope"], "unknown proposer 'nope'"),
        (["--policy", "fixed", "--policy-param", "k=0", "--proposer", "prompt-lookup"], "k must be"),
        (["--policy-param", "kk=3"], "no parameter 'kk'"),
        (["--proposer", "prompt-lookup", "--draft", "/tmp"], "drop --draft"),
        (["--draft", "/no/such/draft"], "does not exist"),
        (["--port", "70000"], "expected a port"),
        (["--num-speculative-tokens", "0"], "expected an integer >= 1"),
        (["stray"], "unexpected argument 'stray'"),
        (["--target-only", "--policy", "nope"], "unknown policy 'nope'"),
    ],
)
def test_a_bad_option_is_one_line_and_starts_nothing(args, words, capsys):
    code, out, err, spawned = serve(capsys, *args)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("specdec: error: ") and words in err, err
    assert out == "" and not spawned, spawned


def test_the_error_and_exit_code_of_the_command_itself():
    result = subprocess.run([*SPECDEC, "serve", "--policy", "nope"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("specdec: error: unknown policy 'nope'") and result.stderr.count("\n") == 1


def test_without_vllm_it_says_how_to_install_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # vLLM cannot be imported, as without the extra
    code, _, err, spawned = serve(capsys, "--proposer", "prompt-lookup")
    assert code == 2 and err.count("\n") == 1 and not spawned
    assert "vLLM, which is not installed" in err and "-e '.[vllm]'" in err


def test_a_busy_port_is_refused_before_starting(capsys):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed: the missing vLLM is reported first")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err, spawned = serve(capsys, "--proposer", "prompt-lookup", "--port", str(port))
    assert code == 2 and f"cannot serve on 127.0.0.1:{port}" in err and not spawned


def test_the_command_is_vllms_server_with_specdecs_config(capsys):
    code, out, err, _ = serve(capsys, "--policy", "fixed", "--policy-param", "k=3", "--proposer", "prompt-lookup",
                              "--num-speculative-tokens", "5", "--port", "8123", "--print-command", "--", "--max-num-seqs", "4")  # fmt: skip
    assert code == 0, err
    words = shlex.split(out)
    assert words[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"] and words[-2:] == ["--max-num-seqs", "4"]
    assert words[words.index("--port") + 1] == "8123" and "--enforce-eager" in words
    config = json.loads(words[words.index("--speculative-config") + 1])
    assert config["method"] == "custom_class" and config["num_speculative_tokens"] == 5
    options = VllmOptions.from_class_name(config["model"].rsplit(".", 1)[1])
    assert options == VllmOptions("fixed", "prompt-lookup", 5, None, {"k": 3}, {})
    assert config["model"].rsplit(".", 1)[1].startswith(NAME_PREFIX)


def test_target_only_serves_without_a_speculative_config(capsys):
    code, out, _, _ = serve(capsys, "--target-only", "--print-command")
    assert code == 0 and "--speculative-config" not in out and shlex.split(out)[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
