"""A decoder's strategies from names (`policy="svip"`, `proposer="draft"`) and the draft given once.

The registry path the command line takes: the registry finds the class (an unknown name is its
one-line error listing the valid ones), `StrategyEntry.build` sets the typed parameters, and the
draft model goes as a resource to whichever strategy has a `model` field (the proposer, and a
policy such as PACER), as the command line's `--draft` does; the target goes likewise to a
strategy with a `target` field (a head that drafts from the target's own states, EAGLE). The
recipe is kept, so that a batch builds each row its own strategies (their state is per sequence).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs

from specdec.errors import ConfigurationError
from specdec.integrations.base import BatchModel, ForkableModel, LanguageModel, as_model
from specdec.integrations.rows import ModelRow
from specdec.policy import LengthPolicy
from specdec.proposer import Proposer
from specdec.registry import StrategyEntry

DEFAULT_POLICY = ("fixed", {"k": 4})  # by registry name: the core names no strategy
DRAFT_PROPOSER = "draft"  # the proposer of `Decoder(target, draft=...)` when none is named


@attrs.frozen
class StrategyRecipe:
    """How a decoder's policy and proposer were given: registered names (their entries, parameters
    and resources) or a `factory` of fresh (policy, proposer) can be built again, once per row of
    a batch; objects given directly are used as they are and cannot be (`can_rebuild`)."""

    policy: LengthPolicy | StrategyEntry | None
    proposer: Proposer | StrategyEntry | None
    policy_params: Mapping[str, Any] | None = None
    proposer_params: Mapping[str, Any] | None = None
    draft: LanguageModel | None = None
    target: LanguageModel | None = None
    factory: Callable[[], tuple[LengthPolicy, Proposer | None]] | None = None

    @property
    def can_rebuild(self) -> bool:
        named = isinstance(self.policy, StrategyEntry) and (self.proposer is None or isinstance(self.proposer, StrategyEntry))
        return named or self.factory is not None

    def build(self, *, row: int | None = None) -> tuple[LengthPolicy, Proposer | None]:
        """The strategies (built from the entries or by the factory, objects as given). For `row` of
        a batch, the draft model goes to them as that row of the draft (`ModelRow`: the rows' draft
        forwards can then run as one) or, for a draft that holds one sequence, as a sibling: its
        weights shared, its cache their own."""
        if self.factory is not None:
            return self.factory()
        resources: dict[str, Any] = {} if self.target is None else {"target": self.target}
        if self.draft is not None:
            resources["model"] = self.draft if row is None else draft_row(self.draft, row)
        policy = self.policy.build(self.policy_params, **resources) if isinstance(self.policy, StrategyEntry) else self.policy
        proposer = self.proposer.build(self.proposer_params, **resources) if isinstance(self.proposer, StrategyEntry) else self.proposer
        return policy, proposer


def draft_row(draft: LanguageModel, row: int) -> LanguageModel:
    """The draft as row `row` of a batch sees it: a row of a batched draft, else a sibling (or the
    draft itself, whose cache the rows then take in turn)."""
    if isinstance(draft, BatchModel):
        return ModelRow(draft, row)
    return draft.sibling() if isinstance(draft, ForkableModel) else draft


def strategy_recipe(
    policy: LengthPolicy | str | None,
    proposer: Proposer | str | None,
    *,
    draft: Any = None,
    target: Any = None,
    policy_params: Mapping[str, Any] | None = None,
    proposer_params: Mapping[str, Any] | None = None,
    factory: Callable[[], tuple[LengthPolicy, Proposer | None]] | None = None,
) -> StrategyRecipe:
    """The recipe for (policy, proposer) given as objects, registered names (a name's parameters
    come as a dict; an unknown name is the registry's error) or a factory of fresh ones."""
    from specdec.plugins import registry

    if factory is not None:
        if policy is not None or proposer is not None or draft is not None or policy_params or proposer_params:
            raise ConfigurationError("strategies= builds the policy and proposer: drop policy=, proposer=, draft= and their params")
        return StrategyRecipe(None, None, factory=factory)

    reg = registry()
    if proposer is None and draft is not None:
        proposer = DRAFT_PROPOSER
    draft_model = None
    if isinstance(proposer, str):
        entry = reg.get("proposer", proposer)
        if entry.uses_draft_model:
            if draft is None:
                raise ConfigurationError(f"proposer {proposer!r} drafts with a model: pass draft= (a path or a model)")
        elif draft is not None:
            raise ConfigurationError(f"proposer {proposer!r} does not use a draft model; drop draft=")
        if draft is not None:
            draft_model = as_model(draft)
        proposer = entry
    else:
        _no_params("proposer", proposer_params)
        if draft is not None:
            raise ConfigurationError("draft= goes with a proposer given by name (e.g. proposer='draft'); this proposer holds its own model")
    if policy is None:
        name, defaults = DEFAULT_POLICY
        policy, policy_params = name, {**defaults, **(policy_params or {})}
    if isinstance(policy, str):
        policy = reg.get("policy", policy)
    else:
        _no_params("policy", policy_params)
    return StrategyRecipe(policy, proposer, policy_params, proposer_params, draft_model, target)


def _no_params(kind: str, params: Mapping[str, Any] | None) -> None:
    if params:
        raise ConfigurationError(f"{kind}_params= applies to a {kind} given by name; set them on the {kind} object instead")
