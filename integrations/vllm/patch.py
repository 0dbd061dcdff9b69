"""The one patch to vLLM: tell a custom proposer which request each row is, and which finished.

vLLM calls a custom proposer with rows (sampled tokens, token ids) but not the request ids beside
them (`input_batch.req_ids` in the model runner), and never says when a request finished. specdec
keeps a policy and a proposer per request, so it needs both. The patch wraps two methods of
vLLM's `GPUModelRunner` (which the CPU runner subclasses), only for a drafter that asks for it
(`wants_batch_rows`):

- `propose_draft_token_ids`: first hands the drafter the row order (`BatchRows`);
- `_update_states`: then hands it `scheduler_output.finished_req_ids` (finished and aborted
  requests, every step, even steps that draft nothing).

It also gives vLLM's worker a `specdec_stats` method, so that `LLM.collective_rpc("specdec_stats")`
(`engine_stats`) reads the proposer's counts without vLLM's insecure pickled-function calls.

It is checked against the installed vLLM: another version, or a method whose signature moved, is
a one-line error naming what does not fit instead of a wrong answer later.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Mapping, Sequence

import attrs

from specdec.errors import ConfigurationError

SUPPORTED_VERSIONS = ("0.32.",)  # vLLM releases whose model runner this patch was written against
_EXPECTED = {
    "propose_draft_token_ids": ("self", "scheduler_output", "sampled_token_ids"),
    "_update_states": ("self", "scheduler_output"),
}
_MARK = "_specdec_rows_patch"


@attrs.frozen
class BatchRows:
    """The rows of one `propose` call: `req_ids[i]` is row i's request, `requests` the runner's
    per-request state (prompt ids and sampling parameters, by request id)."""

    req_ids: tuple[str, ...]
    requests: Mapping[str, Any] = attrs.field(eq=False, repr=False)

    def prompt_length(self, req_id: str) -> int | None:
        state = self.requests.get(req_id)
        prompt = getattr(state, "prompt_token_ids", None)
        return None if prompt is None else len(prompt)

    def max_tokens(self, req_id: str) -> int | None:
        params = getattr(self.requests.get(req_id), "sampling_params", None)
        return getattr(params, "max_tokens", None)

    def stop_token_ids(self, req_id: str) -> frozenset[int]:
        """The tokens that end the request whenever it emits one, as vLLM's scheduler checks them
        (`check_stop`): its end-of-sequence token (none with `ignore_eos`) and its `stop_token_ids`."""
        params = getattr(self.requests.get(req_id), "sampling_params", None)
        eos = getattr(params, "eos_token_id", None)
        stops = set(getattr(params, "stop_token_ids", None) or ())
        return frozenset(stops | ({eos} if eos is not None else set()))


class VllmVersionError(ConfigurationError):
    """The installed vLLM is not one the request-id patch fits."""


def check(version: str, runner: type) -> None:
    """Raise `VllmVersionError` unless `runner` (vLLM `version`'s GPUModelRunner) fits the patch."""
    problems = []
    if not version.startswith(SUPPORTED_VERSIONS):
        problems.append(f"version {version} is not one of {', '.join(v + 'x' for v in SUPPORTED_VERSIONS)}")
    for name, leading in _EXPECTED.items():
        method = getattr(runner, name, None)
        if method is None:
            problems.append(f"GPUModelRunner.{name} is gone")
            continue
        found = tuple(inspect.signature(method).parameters)[: len(leading)]
        if found != leading:
            problems.append(f"GPUModelRunner.{name} takes {found}, not {leading}")
    if problems:
        raise VllmVersionError(
            "specdec's vLLM integration does not fit the installed vLLM (" + "; ".join(problems)
            + "): install the version it supports with `pip install torch==2.13.0 -e '.[vllm]'`"
        )


def apply() -> None:
    """Patch vLLM's model runner once per process (idempotent); see the module docstring."""
    import vllm
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner
    from vllm.v1.worker.worker_base import WorkerBase

    if getattr(GPUModelRunner, _MARK, False):
        return
    check(vllm.__version__, GPUModelRunner)
    propose = GPUModelRunner.propose_draft_token_ids
    update = GPUModelRunner._update_states

    @functools.wraps(propose)
    def propose_draft_token_ids(self: Any, scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
        drafter = getattr(self, "drafter", None)
        if getattr(drafter, "wants_batch_rows", False):
            drafter.batch_rows = BatchRows(tuple(self.input_batch.req_ids), self.requests)
        return propose(self, scheduler_output, *args, **kwargs)

    @functools.wraps(update)
    def _update_states(self: Any, scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
        result = update(self, scheduler_output, *args, **kwargs)
        drafter = getattr(self, "drafter", None)
        finished: Sequence[str] = getattr(scheduler_output, "finished_req_ids", ()) or ()
        if finished and getattr(drafter, "wants_batch_rows", False):
            drafter.finish(finished)
        return result

    def specdec_stats(self: Any) -> dict[str, Any] | None:
        """The specdec proposer's counts in this worker (None when it runs none)."""
        drafter = getattr(getattr(self, "model_runner", None), "drafter", None)
        return drafter.stats() if getattr(drafter, "wants_batch_rows", False) else None

    GPUModelRunner.propose_draft_token_ids = propose_draft_token_ids
    GPUModelRunner._update_states = _update_states
    WorkerBase.specdec_stats = specdec_stats
    setattr(GPUModelRunner, _MARK, True)
