"""A decoder's strategies from names (`policy="svip"`, `proposer="draft"`) and the draft given once.

The registry path the command line takes: the registry finds the class (an unknown name is its
one-line error listing the valid ones), `StrategyEntry.build` sets the typed parameters, and the
draft model goes as a resource to whichever strategy has a `model` field (the proposer, and a
policy such as PACER), as the command line's `--draft` does; the target goes likewise to a
strategy with a `target` field (a head that drafts from the target's own states, EAGLE).
"""

from __future__ import annotations

from typing import Any, Mapping

from specdec.errors import ConfigurationError
from specdec.integrations.base import as_model
from specdec.policy import LengthPolicy
from specdec.proposer import Proposer

DEFAULT_POLICY = ("fixed", {"k": 4})  # by registry name: the core names no strategy
DRAFT_PROPOSER = "draft"  # the proposer of `Decoder(target, draft=...)` when none is named


def build_strategies(
    policy: LengthPolicy | str | None,
    proposer: Proposer | str | None,
    *,
    draft: Any = None,
    target: Any = None,
    policy_params: Mapping[str, Any] | None = None,
    proposer_params: Mapping[str, Any] | None = None,
) -> tuple[LengthPolicy, Proposer | None]:
    """(policy, proposer) from objects or registered names; a name's parameters come as a dict."""
    from specdec.plugins import registry

    reg = registry()
    if proposer is None and draft is not None:
        proposer = DRAFT_PROPOSER
    resources: dict[str, Any] = {} if target is None else {"target": target}
    if isinstance(proposer, str):
        if reg.get("proposer", proposer).uses_draft_model:
            if draft is None:
                raise ConfigurationError(f"proposer {proposer!r} drafts with a model: pass draft= (a path or a model)")
        elif draft is not None:
            raise ConfigurationError(f"proposer {proposer!r} does not use a draft model; drop draft=")
        if draft is not None:
            resources["model"] = as_model(draft)
        proposer = reg.get("proposer", proposer).build(proposer_params, **resources)
    else:
        _no_params("proposer", proposer_params)
        if draft is not None:
            raise ConfigurationError("draft= goes with a proposer given by name (e.g. proposer='draft'); this proposer holds its own model")
    if policy is None:
        name, defaults = DEFAULT_POLICY
        policy, policy_params = name, {**defaults, **(policy_params or {})}
    if isinstance(policy, str):
        policy = reg.get("policy", policy).build(policy_params, **resources)
    else:
        _no_params("policy", policy_params)
    return policy, proposer


def _no_params(kind: str, params: Mapping[str, Any] | None) -> None:
    if params:
        raise ConfigurationError(f"{kind}_params= applies to a {kind} given by name; set them on the {kind} object instead")
