"""`specdec serve` answered by the real `openai` client on 127.0.0.1: chat, completion and
streaming at temperature 0 give the text the `--target-only` server gives for the same prompts,
with several requests at once; drafts are accepted; the URL is printed once; Ctrl-C stops the
server and every process it started.

Two server starts in all (30-90 s each on two cores): the target-only server answers every
prompt once and is stopped, then the speculative server is kept for the module's tests.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

if importlib.util.find_spec("vllm") is None:  # installed but broken is a failure, not a skip
    pytest.skip("vLLM is not installed (pip install torch==2.13.0 -e '.[vllm]', see the README)", allow_module_level=True)

import psutil  # noqa: E402  (comes with vLLM)
from openai import OpenAI  # noqa: E402  (comes with vLLM)

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

SPECDEC = [sys.executable, "-c", "import sys; from specdec.cli import main; sys.exit(main())"]
START_TIMEOUT = 600
PASSAGE = "The lighthouse keeper climbed the stairs every evening at six, lit the lamp and wrote the weather in a green book."
CHATS = [  # (user message, max_tokens)
    ("Say hello in one word.", 40),
    (f"Repeat this sentence exactly: {PASSAGE}", 56),
    ("Count from 1 to 20, separated by commas.", 60),
    ("What is 12 * 7?", 24),
    ("List the days of the week.", 36),
    ("Write a haiku about the sea.", 30),
]
COMPLETIONS = [  # (raw prompt, max_tokens)
    ("The capital of France is", 24),
    ("1, 2, 3, 4, 5,", 40),
    (f"{PASSAGE} {PASSAGE[:60]}", 40),
    ("def fibonacci(n):", 48),
]
STREAMED = [CHATS[1], CHATS[2], CHATS[4]]  # the same prompts, streamed: joined deltas equal the whole text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """A `specdec serve` process: its URL (the one line it printed on stdout) and its log."""

    def __init__(self, args: list[str], directory: Path) -> None:
        self.port = _free_port()
        self.stdout_path, self.log_path = directory / "stdout", directory / "log"
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
        with open(self.stdout_path, "w") as out, open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [*SPECDEC, "serve", "--port", str(self.port), "--max-model-len", "1024", *args],
                stdout=out, stderr=log, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        started = time.monotonic()
        while not self.stdout_path.read_text().endswith("\n"):
            if self.process.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                self.stop()
                tail = self.log_path.read_text()[-3000:]
                pytest.fail(f"specdec serve {' '.join(args)} did not print its URL:\n{tail}")
            time.sleep(0.5)
        self.start_seconds = time.monotonic() - started
        self.url = self.stdout_path.read_text().strip()
        self.client = OpenAI(base_url=self.url, api_key="unused", timeout=300, max_retries=0)
        self.model = self.client.models.list().data[0].id

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> int:
        """Ctrl-C, as a terminal sends it to specdec; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _chat(client: OpenAI, model: str, message: str, max_tokens: int) -> str:
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": message}], temperature=0.0, max_tokens=max_tokens
    )
    return response.choices[0].message.content


def _completion(client: OpenAI, model: str, prompt: str, max_tokens: int) -> str:
    return client.completions.create(model=model, prompt=prompt, temperature=0.0, max_tokens=max_tokens).choices[0].text


def _streamed_chat(client: OpenAI, model: str, message: str, max_tokens: int) -> str:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": message}], temperature=0.0, max_tokens=max_tokens, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) > 1, "the answer came in one piece: not streamed"
    return "".join(pieces)


def _streamed_completion(client: OpenAI, model: str, prompt: str, max_tokens: int) -> str:
    stream = client.completions.create(model=model, prompt=prompt, temperature=0.0, max_tokens=max_tokens, stream=True)
    return "".join(chunk.choices[0].text for chunk in stream if chunk.choices)


def _answers(served: Served) -> dict[str, list[str]]:
    """Every prompt of the module, all sent at once (the server batches them)."""
    jobs = {
        "chat": [(_chat, *c) for c in CHATS],
        "completion": [(_completion, *c) for c in COMPLETIONS],
        "streamed chat": [(_streamed_chat, *c) for c in STREAMED],
        "streamed completion": [(_streamed_completion, *c) for c in COMPLETIONS[:2]],
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        futures = {kind: [pool.submit(f, served.client, served.model, *a) for f, *a in items] for kind, items in jobs.items()}
        return {kind: [f.result() for f in items] for kind, items in futures.items()}


@pytest.fixture(scope="module")
def target_only(tmp_path_factory) -> dict[str, Any]:
    """The `--target-only` server's answers; the server is stopped with Ctrl-C afterwards."""
    served = Served(["--target-only"], tmp_path_factory.mktemp("target-only"))
    try:
        answers = _answers(served)
    finally:
        children = served.descendants()
        code = served.stop()
    return {"answers": answers, "code": code, "children": children, "start_seconds": served.start_seconds}


@pytest.fixture(scope="module")
def speculative(tmp_path_factory, target_only) -> Iterator[Served]:
    """`specdec serve` with the draft model under svip, kept for the module's tests."""
    served = Served(
        ["--policy", "svip", "--proposer", "draft", "--num-speculative-tokens", "4", "--proposer-param", "context_window=256"],
        tmp_path_factory.mktemp("speculative"),
    )
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def answers(speculative) -> dict[str, list[str]]:
    return _answers(speculative)


@pytest.mark.parametrize("kind", ["chat", "completion", "streamed chat", "streamed completion"])
def test_greedy_text_equals_the_target_only_servers(kind, answers, target_only):
    want = target_only["answers"][kind]
    assert all(want), f"target-only gave an empty {kind}"
    assert answers[kind] == want


def test_streamed_text_equals_the_whole_answer(answers):
    assert answers["streamed chat"] == [answers["chat"][CHATS.index(c)] for c in STREAMED]
    assert answers["streamed completion"] == answers["completion"][:2]


def test_the_server_drafts_with_specdec_and_vllm_accepts(speculative, answers):
    with urllib.request.urlopen(speculative.url.removesuffix("/v1") + "/metrics", timeout=30) as response:
        metrics = response.read().decode()
    values = {}
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        base = name.split("{")[0]
        if base in ("vllm:spec_decode_num_draft_tokens_total", "vllm:spec_decode_num_accepted_tokens_total"):
            values[base] = values.get(base, 0.0) + float(value)
    assert values.get("vllm:spec_decode_num_draft_tokens_total", 0) > 0, "the server drafted nothing"
    assert values.get("vllm:spec_decode_num_accepted_tokens_total", 0) > 0, "vLLM accepted no draft token"
    log = speculative.log_path.read_text()
    assert "specdec.integrations.vllm.configured.Specdec_" in log  # vLLM loaded specdec's proposer


def test_the_url_is_printed_once(speculative):
    assert speculative.stdout_path.read_text() == f"http://127.0.0.1:{speculative.port}/v1\n"


def test_ctrl_c_stops_the_server_and_every_process_it_started(target_only):
    assert target_only["code"] == 0
    assert target_only["children"], "specdec serve started no process"
    alive = [p for p in target_only["children"] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after Ctrl-C: {[p.pid for p in alive]}"


def test_ctrl_c_stops_the_speculative_server_too(speculative, answers):
    """Last in the module: stops the shared server."""
    children = speculative.descendants()
    assert len(children) >= 2  # vLLM's server and its engine
    assert speculative.stop() == 0
    time.sleep(1)
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
