"""specdec's patches to vLLM, in one place: tell a custom proposer which request each row is and
which requests ended, and give vLLM's rejection sampler the temperatures it was meant to read.

vLLM calls a custom proposer with rows (sampled tokens, token ids) but not the request ids beside
them (`input_batch.req_ids` in the model runner), and never says when a request finished. specdec
keeps a policy and a proposer per request, so it needs both. The patch wraps methods of vLLM's
`GPUModelRunner` (which the CPU runner subclasses) and `EngineCore`, acting only for a drafter
that asks for it (`wants_batch_rows`):

- `GPUModelRunner.propose_draft_token_ids`: first hands the drafter the row order (`BatchRows`);
- `GPUModelRunner._update_states`: then hands it `scheduler_output.finished_req_ids` (finished
  and aborted requests, every step, even steps that draft nothing);
- `EngineCore.abort_requests`: then tells the worker at once (`specdec_finish`) which requests
  were aborted, by a client or because their text reached a stop string (both end there), so
  their state goes before the next step, which an idle engine may never take. This reaches the
  worker where it runs in the engine core's process (one worker, vLLM's default on a CPU); with
  several worker processes the core is not patched and `_update_states` drops them one step later.

It also gives vLLM's worker a `specdec_stats` method, so that `LLM.collective_rpc("specdec_stats")`
(`engine_stats`) reads the proposer's counts without vLLM's insecure pickled-function calls.

And it replaces vLLM's `rejection_sampler.expand_batch_to_tokens` (each request's temperature,
top-k and top-p repeated for each of its draft tokens) by `expand_batch_to_tokens` here. In the
CPU build of vLLM 0.32 the kernel behind it writes into a temporary int64 copy of its output
and leaves the output itself unwritten, so at a temperature > 0 the target's logits at every
draft position are divided by uninitialized memory (and top-k and top-p read from it): the
output is not the target's distribution, whatever the proposer (vLLM's own `ngram` included).
Greedy requests never read it.

Everything it wraps or replaces is checked against the installed vLLM first: another version, or
a function whose signature moved, is a one-line error naming what does not fit instead of a wrong
answer later.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping, Sequence

import attrs
import torch

from specdec.errors import ConfigurationError

from .options import CONFIGURED_MODULE, VARIANT_KEY

SUPPORTED_VERSIONS = ("0.32.",)  # vLLM releases these patches were written against
EXPECTED = {  # what the patches wrap or replace, with the leading parameters they were written for
    "GPUModelRunner.propose_draft_token_ids": ("self", "scheduler_output", "sampled_token_ids"),
    "GPUModelRunner._update_states": ("self", "scheduler_output"),
    "EngineCore.abort_requests": ("self", "request_ids"),
    "rejection_sampler.expand_batch_to_tokens": ("x", "cu_num_tokens", "num_tokens", "replace_from", "replace_to"),
}
_MARK = "_specdec_rows_patch"
REPLACED: dict[str, Any] = {}  # vLLM's functions `apply` replaced, by name (kept to show what a replacement fixes)


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

    def variant(self, req_id: str) -> str | None:
        """The specdec variant the request selects (`SamplingParams.extra_args["specdec"]`), if any."""
        params = getattr(self.requests.get(req_id), "sampling_params", None)
        name = (getattr(params, "extra_args", None) or {}).get(VARIANT_KEY)
        return name if isinstance(name, str) else None

    def stop_token_ids(self, req_id: str) -> frozenset[int]:
        """The tokens that end the request whenever it emits one, as vLLM's scheduler checks them
        (`check_stop`): its end-of-sequence token (none with `ignore_eos`) and its `stop_token_ids`."""
        params = getattr(self.requests.get(req_id), "sampling_params", None)
        eos = getattr(params, "eos_token_id", None)
        stops = set(getattr(params, "stop_token_ids", None) or ())
        return frozenset(stops | ({eos} if eos is not None else set()))


class VllmVersionError(ConfigurationError):
    """The installed vLLM is not one specdec's patches fit."""


def expand_batch_to_tokens(
    x: torch.Tensor, cu_num_tokens: torch.Tensor, num_tokens: int, replace_from: Any = 0, replace_to: Any = 0
) -> torch.Tensor:
    """`x[i]` (one value per request) repeated for each of request i's tokens, `cu_num_tokens`
    their cumulative counts, `replace_from` read as `replace_to`: what vLLM's function of that
    name computes, in plain torch at `x`'s dtype (see the module docstring)."""
    counts = torch.diff(cu_num_tokens.to(torch.int64), prepend=cu_num_tokens.new_zeros(1, dtype=torch.int64))
    values = torch.where(x == replace_from, torch.full_like(x, replace_to), x)
    return torch.repeat_interleave(values, counts, output_size=num_tokens)


def check(version: str, found: Mapping[str, Callable[..., Any] | None]) -> None:
    """Raise `VllmVersionError` unless vLLM `version` and its functions `found` (by their names in
    `EXPECTED`, None for one that is gone) fit the patches."""
    problems = []
    if not version.startswith(SUPPORTED_VERSIONS):
        problems.append(f"version {version} is not one of {', '.join(v + 'x' for v in SUPPORTED_VERSIONS)}")
    for name, leading in EXPECTED.items():
        function = found.get(name)
        if function is None:
            problems.append(f"{name} is gone")
            continue
        parameters = tuple(inspect.signature(function).parameters)[: len(leading)]
        if parameters != leading:
            problems.append(f"{name} takes {parameters}, not {leading}")
    if problems:
        raise VllmVersionError(
            "specdec's vLLM integration does not fit the installed vLLM (" + "; ".join(problems)
            + "): install the version it supports with `pip install torch==2.13.0 -e '.[vllm]'`"
        )


def _runs_specdec(vllm_config: Any) -> bool:
    """Whether an engine with `vllm_config` drafts with specdec's proposer."""
    spec = vllm_config.speculative_config
    return spec is not None and spec.method == "custom_class" and str(spec.model).startswith(CONFIGURED_MODULE + ".")


def installed() -> dict[str, Callable[..., Any] | None]:
    """The functions `EXPECTED` names, as the installed vLLM has them (None: gone)."""
    from vllm.v1.engine.core import EngineCore
    from vllm.v1.sample import rejection_sampler
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    owners = {"GPUModelRunner": GPUModelRunner, "EngineCore": EngineCore, "rejection_sampler": rejection_sampler}
    return {name: getattr(owners[name.split(".")[0]], name.split(".")[1], None) for name in EXPECTED}


def fix_sampler() -> None:
    """Give vLLM's rejection sampler `expand_batch_to_tokens` here (see the module docstring), in
    this process, once; for engines that run no specdec proposer too (`specdec bench` fixes vLLM's
    built-in methods with it)."""
    from vllm.v1.sample import rejection_sampler

    if rejection_sampler.expand_batch_to_tokens is not expand_batch_to_tokens:
        REPLACED["expand_batch_to_tokens"] = rejection_sampler.expand_batch_to_tokens
        rejection_sampler.expand_batch_to_tokens = expand_batch_to_tokens  # read as a global by apply_sampling_constraints


def apply() -> None:
    """Patch vLLM once per process (idempotent); see the module docstring."""
    import vllm
    from vllm.v1.engine.core import EngineCore
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner
    from vllm.v1.worker.worker_base import WorkerBase

    if getattr(GPUModelRunner, _MARK, False):
        return
    check(vllm.__version__, installed())
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

    abort = EngineCore.abort_requests

    @functools.wraps(abort)
    def abort_requests(self: Any, request_ids: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        result = abort(self, request_ids, *args, **kwargs)
        if request_ids and _runs_specdec(self.vllm_config):
            self.model_executor.collective_rpc("specdec_finish", args=(list(request_ids),))
        return result

    def specdec_stats(self: Any) -> dict[str, Any] | None:
        """The specdec proposer's counts in this worker (None when it runs none)."""
        drafter = getattr(getattr(self, "model_runner", None), "drafter", None)
        return drafter.stats() if getattr(drafter, "wants_batch_rows", False) else None

    def specdec_finish(self: Any, request_ids: Sequence[str]) -> None:
        """Drop the specdec proposer's state of `request_ids` in this worker."""
        drafter = getattr(getattr(self, "model_runner", None), "drafter", None)
        if getattr(drafter, "wants_batch_rows", False):
            drafter.finish(request_ids)

    GPUModelRunner.propose_draft_token_ids = propose_draft_token_ids
    GPUModelRunner._update_states = _update_states
    EngineCore.abort_requests = abort_requests
    WorkerBase.specdec_stats = specdec_stats
    WorkerBase.specdec_finish = specdec_finish
    fix_sampler()
    setattr(GPUModelRunner, _MARK, True)
