"""specdec's options for vLLM, and how they travel inside `speculative_config`.

vLLM's `SpeculativeConfig` forbids unknown fields, and the one string it hands a custom proposer
unchanged in every process is `model`, the class path it imports. So the options ride in that
path: `specdec.integrations.vllm.configured.<NAME>`, where NAME encodes the options (JSON, then
base32, which stays a Python identifier). `configured` turns the name back into a proposer class
bound to those options. One engine's options therefore never leak into another's, and the dict
works unchanged with `vllm serve --speculative-config`.

An engine may also carry named variants (other policies and proposers, with their parameters),
which a request selects with `SamplingParams(extra_args={"specdec": NAME})` (`vllm_xargs` in
vLLM's OpenAI server); the rest run the engine's own.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Mapping

import attrs

from specdec.errors import ConfigurationError
from specdec.policy import positive_int

CONFIGURED_MODULE = "specdec.integrations.vllm.configured"
NAME_PREFIX = "Specdec_"
VARIANT_KEY = "specdec"  # the key of SamplingParams.extra_args that names a request's variant


def _params(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"strategy parameters must be a dict of name -> value, got {value!r}")
    return dict(value)


def _draft_path(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"draft must be a path to a model directory (vLLM's processes load it by path), got {type(value).__name__}")
    return str(Path(value).expanduser().absolute())


@attrs.frozen
class Strategies:
    """A policy and a proposer by registered name, with their parameters."""

    policy: str
    proposer: str
    policy_params: dict[str, Any] = attrs.field(factory=dict, converter=_params)
    proposer_params: dict[str, Any] = attrs.field(factory=dict, converter=_params)


def _variants(value: Mapping[str, Any] | None) -> dict[str, Strategies]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"variants must be a dict of name -> {{policy, proposer, policy_params, proposer_params}}, got {value!r}")
    variants = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a variant's name must be a non-empty string, got {name!r}")
        if isinstance(spec, Strategies):
            variants[name] = spec
            continue
        if not isinstance(spec, Mapping) or not {"policy", "proposer"} <= spec.keys() <= set(attrs.fields_dict(Strategies)):
            raise ConfigurationError(
                f"variant {name!r} must be a dict with policy and proposer (and optionally policy_params, proposer_params), got {spec!r}"
            )
        variants[name] = Strategies(**spec)
    return variants


@attrs.frozen
class VllmOptions:
    """What the proposer inside vLLM runs: a policy and a proposer by registered name, their
    parameters, the draft model's path (for proposers and policies that use one), K, the most
    tokens vLLM reserves for one request's draft, and named variants requests may select."""

    policy: str
    proposer: str
    num_speculative_tokens: int = attrs.field(validator=positive_int)
    draft: str | None = attrs.field(default=None, converter=_draft_path)
    policy_params: dict[str, Any] = attrs.field(factory=dict, converter=_params)
    proposer_params: dict[str, Any] = attrs.field(factory=dict, converter=_params)
    variants: dict[str, Strategies] = attrs.field(factory=dict, converter=_variants)

    def strategies(self, variant: str | None = None) -> Strategies:
        """The engine's own strategies (`variant` None), or the named variant's."""
        if variant is None:
            return Strategies(self.policy, self.proposer, self.policy_params, self.proposer_params)
        return self.variants[variant]

    def class_name(self) -> str:
        """The identifier that encodes these options (see the module docstring)."""
        try:
            text = json.dumps(attrs.asdict(self), sort_keys=True, separators=(",", ":"))
        except TypeError as error:
            raise ConfigurationError(f"strategy parameters must be JSON values (numbers, strings, booleans, lists): {error}") from None
        return NAME_PREFIX + base64.b32encode(text.encode()).decode().rstrip("=")

    def class_path(self) -> str:
        return f"{CONFIGURED_MODULE}.{self.class_name()}"

    @classmethod
    def from_class_name(cls, name: str) -> "VllmOptions":
        """The options a `class_name` encodes; a one-line error for a name specdec did not make."""
        if not name.startswith(NAME_PREFIX):
            raise AttributeError(f"{CONFIGURED_MODULE} has no {name!r}: build the config with specdec.integrations.vllm.speculative_config()")
        body = name[len(NAME_PREFIX):]
        try:
            text = base64.b32decode(body + "=" * (-len(body) % 8)).decode()
            return cls(**json.loads(text))
        except (ValueError, TypeError) as error:
            raise ConfigurationError(f"{name[:40]}... is not a specdec proposer name from speculative_config(): {error}") from None
