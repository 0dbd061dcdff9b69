"""specdec's length policies and proposers inside vLLM's speculative decoding.

`speculative_config(...)` returns the dict for `vllm.LLM(..., speculative_config=...)` (or
`vllm serve --speculative-config`): vLLM then builds `SpecdecProposer` (`method: custom_class`),
which runs the named proposer under the named policy with one state per request (or a named
variant's, for a request that selects one). Nothing here imports vLLM until vLLM builds the
proposer in its worker.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from .models import vllm_model_dir
from .options import VllmOptions

__all__ = ["speculative_config", "engine_stats", "vllm_model_dir", "VllmOptions"]


def speculative_config(
    *,
    policy: str = "fixed",
    proposer: str | None = None,
    draft: str | os.PathLike | None = None,
    num_speculative_tokens: int = 8,
    policy_params: Mapping[str, Any] | None = None,
    proposer_params: Mapping[str, Any] | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The `speculative_config` that runs specdec's `proposer` under `policy` inside vLLM.

    Names are registered strategies (built-ins and plugins, as `specdec plugins` lists them), with
    their parameters as dicts; `draft` is the draft model's directory, for proposers (and policies)
    that draft with a model; `proposer` defaults to `draft` when a draft is given. Every request's
    draft is capped by the policy and by `num_speculative_tokens`, the slots vLLM reserves per
    request. `variants` names other strategies the same engine runs for the requests that select
    one (`SamplingParams(extra_args={"specdec": NAME})`), each a dict of `policy`, `proposer`
    and optionally `policy_params`, `proposer_params`; they share the draft. Names, parameter
    names and the draft's presence are checked here, once, so a mistake is a one-line error
    before any engine starts.
    """
    from specdec.errors import ConfigurationError
    from specdec.plugins import registry

    if proposer is None:
        if draft is None:
            raise ConfigurationError("name a proposer (e.g. proposer='prompt-lookup'), or give draft= for proposer='draft'")
        proposer = "draft"
    options = VllmOptions(policy, proposer, num_speculative_tokens, draft, policy_params, proposer_params, variants)
    reg = registry()
    named = {"": options.strategies(), **options.variants}
    entries = {name: (reg.get("proposer", s.proposer), reg.get("policy", s.policy)) for name, s in named.items()}
    uses_draft = any(p.uses_draft_model or q.uses_draft_model for p, q in entries.values())
    if uses_draft and options.draft is None:
        name = next(n for n, (p, q) in entries.items() if p.uses_draft_model or q.uses_draft_model)
        what = f"{named[name].proposer!r} with policy {named[name].policy!r}" + (f" (variant {name!r})" if name else "")
        raise ConfigurationError(f"{what} drafts with a model: pass draft= (its directory)")
    if not uses_draft and options.draft is not None:
        raise ConfigurationError(f"neither proposer {proposer!r} nor policy {policy!r} (nor a variant) uses a draft model; drop draft=")
    if options.draft is not None and not os.path.isdir(options.draft):
        from specdec.errors import ModelNotFoundError

        raise ModelNotFoundError(f"draft model directory {options.draft!r} does not exist")
    for name, strategies in named.items():
        proposer_entry, policy_entry = entries[name]
        for entry, params in ((proposer_entry, strategies.proposer_params), (policy_entry, strategies.policy_params)):
            for key in params:
                entry.field(key, reserved=("model",))
        if not policy_entry.uses_draft_model:
            policy_entry.build(strategies.policy_params)  # values checked too (a model-free policy is cheap to build)
    return {"method": "custom_class", "model": options.class_path(), "num_speculative_tokens": options.num_speculative_tokens}


def engine_stats(llm: Any) -> dict[str, Any]:
    """What specdec's proposer counted in `llm`'s worker (`vllm.LLM`): rounds fed back, tokens
    drafted and accepted (as read from vLLM's verdicts), requests begun, finished and still held,
    and requests begun per variant ("" for the engine's own strategies)."""
    found = [s for s in llm.collective_rpc("specdec_stats") if s is not None]
    if not found:
        from specdec.errors import ConfigurationError

        raise ConfigurationError("this engine runs no specdec proposer (build it with speculative_config=speculative_config(...))")
    return found[0]
