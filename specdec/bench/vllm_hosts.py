"""vLLM engines for `specdec bench --engine vllm`, one per process, all alive through the run.

Each engine runs in a process of its own (`EngineHost`), its engine core in that process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so that several engines live at once, the benchmark's waves
alternate between them, and each engine's counters (vLLM's `get_metrics`, which reads one
process-wide registry) are its own. A wave is a list of prompts served with at most C requests in
flight: a finished request makes room for the next, as clients that wait for their answers do.
Its time is measured in the engine's process, from the first request to the last token.

Every engine gets specdec's fix of vLLM 0.32's CPU temperature expansion
(`specdec.integrations.vllm.patch.fix_sampler`), vLLM's built-in methods included: without it
their sampling at a temperature above 0 is not the target's.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from typing import Any, Mapping, Sequence

import attrs

from specdec.errors import SpecdecError

SPEC_COUNTERS = {
    "vllm:spec_decode_num_drafts": "drafts",
    "vllm:spec_decode_num_draft_tokens": "draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "accepted",
}


class EngineError(SpecdecError):
    """A benchmark engine failed to start or to serve."""


@attrs.frozen
class WaveResult:
    """One wave on one engine: tokens generated per request (in prompt order), wall seconds, and
    vLLM's speculative counters over the wave (drafts verified, tokens drafted and accepted)."""

    tokens: tuple[int, ...]
    seconds: float
    drafts: int = 0
    draft_tokens: int = 0
    accepted: int = 0


def _counters(llm: Any) -> dict[str, int]:
    found = {SPEC_COUNTERS[m.name]: int(m.value) for m in llm.get_metrics() if m.name in SPEC_COUNTERS}
    return {name: found.get(name, 0) for name in SPEC_COUNTERS.values()}


def serve_wave(llm: Any, prompts: Sequence[Sequence[int]], sampling: Mapping[str, Any], concurrency: int, variant: str | None, tag: str) -> WaveResult:
    """Serve `prompts` (token ids) on `llm` with at most `concurrency` requests in flight."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    engine = llm.llm_engine
    before = _counters(llm)
    waiting = list(enumerate(prompts))
    tokens = [0] * len(prompts)
    in_flight = 0
    start = time.perf_counter()
    while waiting or in_flight:
        while waiting and in_flight < concurrency:
            index, ids = waiting.pop(0)
            seed = sampling.get("seed")
            params = SamplingParams(
                temperature=sampling["temperature"], max_tokens=sampling["max_tokens"], seed=None if seed is None else seed + index,
                extra_args={"specdec": variant} if variant else None,
            )  # fmt: skip
            engine.add_request(f"{tag}-{index}", TokensPrompt(prompt_token_ids=list(ids)), params)
            in_flight += 1
        for output in engine.step():
            if output.finished:
                in_flight -= 1
                tokens[int(output.request_id.rsplit("-", 1)[1])] = len(output.outputs[0].token_ids)
    seconds = time.perf_counter() - start
    after = _counters(llm)
    return WaveResult(tuple(tokens), seconds, **{key: after[key] - before[key] for key in after})


def _host(connection: Any, model: str, speculative: dict[str, Any] | None, options: dict[str, Any], env: dict[str, str]) -> None:
    """The engine process: build the engine, then serve waves until told to stop."""
    os.environ.update(env)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        import vllm
        from vllm import LLM

        from specdec.integrations.vllm import patch

        patch.check(vllm.__version__, patch.installed())
        patch.fix_sampler()
        llm = LLM(model, speculative_config=speculative, disable_log_stats=False, **options)
    except Exception as error:  # reported to the parent as one line; the process ends
        connection.send(("error", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))
        return
    connection.send(("ready", None))
    waves = 0
    while True:
        command, payload = connection.recv()
        if command == "stop":
            break
        waves += 1
        try:
            connection.send(("done", serve_wave(llm, *payload, tag=f"w{waves}")))
        except Exception as error:
            connection.send(("error", f"{type(error).__name__}: {error}"))
    llm.llm_engine.engine_core.shutdown()
    connection.send(("stopped", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


class EngineHost:
    """One engine in its own process: `start` (returns once it is ready), `wave`, `stop`."""

    def __init__(self, name: str, model: str, speculative: dict[str, Any] | None, options: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.name = name
        context = multiprocessing.get_context("spawn")  # vLLM's engine does not survive a fork
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_host, args=(child, model, speculative, dict(options), dict(env)), daemon=True)

    def _receive(self, timeout: float) -> tuple[str, Any]:
        if not self._connection.poll(timeout):
            raise EngineError(f"the engine for {self.name} did not answer within {timeout:.0f} s")
        try:
            return self._connection.recv()
        except EOFError:
            raise EngineError(f"the engine for {self.name} exited (code {self._process.exitcode})") from None

    def start(self, timeout: float = 900.0) -> None:
        self._process.start()
        status, message = self._receive(timeout)
        if status != "ready":
            self._process.join(10)
            raise EngineError(f"the engine for {self.name} did not start: {message}")

    def wave(self, prompts: Sequence[Sequence[int]], sampling: Mapping[str, Any], concurrency: int, variant: str | None = None, timeout: float = 3600.0) -> WaveResult:
        self._connection.send(("wave", ([list(p) for p in prompts], dict(sampling), concurrency, variant)))
        status, result = self._receive(timeout)
        if status != "done":
            raise EngineError(f"the engine for {self.name} failed a wave: {result}")
        return result

    def stop(self, grace: float = 60.0) -> float | None:
        """Shut the engine down (killed if it does not exit within `grace` seconds); returns the
        peak resident memory of its process in MiB, when it said."""
        peak = None
        if self._process.is_alive():
            try:
                self._connection.send(("stop", None))
                status, value = self._receive(grace)
                peak = value if status == "stopped" else None
            except (EngineError, OSError):
                pass
            self._process.join(grace)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        return peak
