"""Method specifications of `specdec bench --engine vllm`: what each method asks of vLLM.

- `target-only`: vLLM without speculation, the baseline;
- `vllm-ngram[:k=N,min=A,max=B]`: vLLM's n-gram lookup (`method: ngram`), N tokens (default 4),
  n-grams of A to B tokens (default: vLLM's);
- `vllm-draft[:k=N]`: vLLM's draft model (`method: draft_model`) on the bench's draft, N tokens
  (default 4);
- `vllm-draft-schedule:A-B=N,...`: the same with vLLM's batch-size schedule
  (`num_speculative_tokens_per_batch_size`): N tokens while A to B requests run;
- `POLICY[:KEY=VALUE,...][+PROPOSER[:KEY=VALUE,...]]`: specdec's policy and proposer (default
  `draft`) through the plugin, as in `specdec bench`.

Every specdec method runs in one engine, as a variant its requests select, so the run needs one
engine per vLLM method plus one for all of specdec's. `#LABEL` runs a method again under another
name, as in `specdec bench`.
"""

from __future__ import annotations

from typing import Any

import attrs

from specdec.bench.spec import check_method
from specdec.cli.values import typed_params
from specdec.errors import ConfigurationError
from specdec.plugins import registry

TARGET_ONLY = "target-only"
VLLM_METHODS = "vllm-ngram[:k=N,min=A,max=B], vllm-draft[:k=N], vllm-draft-schedule:A-B=N,..."
VLLM_DEFAULT_METHODS = (
    "target-only;vllm-ngram:k=4;vllm-draft:k=2;vllm-draft:k=4;vllm-draft-schedule:1-1=4,2-4=3,5-1024=2;"
    "fixed:k=4;svip;auto;auto+prompt-lookup;auto+ouroboros"
)


@attrs.frozen
class VllmMethod:
    """One benchmarked method: vLLM's `speculative` config for its own engine (None for target-only),
    or `strategies` (a dict for `speculative_config(variants=...)`) for a specdec method, which
    runs in the engine all specdec methods share."""

    name: str
    speculative: dict[str, Any] | None = None
    strategies: dict[str, Any] | None = None

    @property
    def is_specdec(self) -> bool:
        return self.strategies is not None

    def uses_draft(self) -> bool:
        """Whether the method drafts with the bench's draft model."""
        if self.speculative is not None:
            return self.speculative.get("method") == "draft_model"
        if self.strategies is None:
            return False
        reg = registry()
        return reg.get("proposer", self.strategies["proposer"]).uses_draft_model or reg.get("policy", self.strategies["policy"]).uses_draft_model


def _split(part: str) -> tuple[str, dict[str, str]]:
    name, _, raw = part.partition(":")
    params: dict[str, str] = {}
    for pair in filter(None, raw.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"method parameters are KEY=VALUE, got {pair!r} in {part!r}")
        params[key.strip()] = value.strip()
    return name.strip(), params


def _count(value: str, what: str, spec: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigurationError(f"{what} must be a whole number >= 1, got {value!r} in {spec!r}")
    return number


def _vllm_builtin(name: str, params: dict[str, str], spec: str, draft: str) -> dict[str, Any]:
    allowed = {"vllm-ngram": {"k", "min", "max"}, "vllm-draft": {"k"}}.get(name)
    if allowed is not None and not params.keys() <= allowed:
        raise ConfigurationError(f"{name} takes {', '.join(sorted(allowed))}; got {', '.join(sorted(params.keys() - allowed))} in {spec!r}")
    if name == "vllm-ngram":
        config: dict[str, Any] = {"method": "ngram", "num_speculative_tokens": _count(params.get("k", "4"), "k", spec)}
        for key, field in (("min", "prompt_lookup_min"), ("max", "prompt_lookup_max")):
            if key in params:
                config[field] = _count(params[key], key, spec)
        if config.get("prompt_lookup_min", 1) > config.get("prompt_lookup_max", config.get("prompt_lookup_min", 1)):
            raise ConfigurationError(f"min must be at most max in {spec!r}")
        return config
    if name == "vllm-draft":
        return {"method": "draft_model", "model": draft, "num_speculative_tokens": _count(params.get("k", "4"), "k", spec)}
    if name == "vllm-draft-schedule":
        if not params:
            raise ConfigurationError(f"vllm-draft-schedule needs its schedule, A-B=N for A to B running requests, in {spec!r}")
        schedule = []
        for span, tokens in params.items():
            low, dash, high = span.partition("-")
            if not dash:
                raise ConfigurationError(f"a schedule entry is A-B=N (A to B running requests), got {span!r} in {spec!r}")
            schedule.append([_count(low, "A", spec), _count(high, "B", spec), _count(tokens, "N", spec)])
        schedule.sort()
        if any(a > b for a, b, _ in schedule) or any(prev[1] >= nxt[0] for prev, nxt in zip(schedule, schedule[1:])):
            raise ConfigurationError(f"schedule ranges A-B must have A <= B and not overlap, got {spec!r}")
        return {
            "method": "draft_model", "model": draft, "num_speculative_tokens": max(n for _, _, n in schedule),
            "num_speculative_tokens_per_batch_size": schedule,
        }  # fmt: skip
    raise ConfigurationError(f"unknown vLLM method {name!r}; known: {VLLM_METHODS}")


def vllm_method(spec: str, draft: str = "DRAFT") -> VllmMethod:
    """The method `spec` names (see the module docstring), checked without loading anything;
    `draft` is the draft model's directory, for vLLM's draft-model methods."""
    name = spec.strip()
    base, labelled, label = name.partition("#")
    base = base.strip()
    if labelled and (not base or not label.strip()):
        raise ConfigurationError(f"a method label is METHOD#LABEL with both parts, got {spec!r}")
    if base.endswith("@coupled"):
        raise ConfigurationError(f"{spec!r}: @coupled is a sampling mode of specdec's own loop; vLLM verifies drafts itself")
    if base.startswith("hf-"):
        raise ConfigurationError(f"{spec!r} is transformers' generate, which runs with --engine specdec, not inside vLLM")
    if base == TARGET_ONLY:
        return VllmMethod(name)
    if base.startswith("vllm-"):
        kind, params = _split(base)
        return VllmMethod(name, speculative=_vllm_builtin(kind, params, spec, draft))
    check_method(base)  # names and values as `specdec bench` checks them
    policy_part, _, proposer_part = base.partition("+")
    (policy, policy_raw), (proposer, proposer_raw) = _split(policy_part), _split(proposer_part or "draft")
    reg = registry()
    uses_draft = reg.get("proposer", proposer).uses_draft_model or reg.get("policy", policy).uses_draft_model
    reserved = ("model",) if uses_draft else ()
    strategies = {
        "policy": policy,
        "proposer": proposer,
        "policy_params": typed_params(reg, "policy", policy, policy_raw, reserved=reserved),
        "proposer_params": typed_params(reg, "proposer", proposer, proposer_raw, reserved=reserved),
    }
    return VllmMethod(name, strategies=strategies)
