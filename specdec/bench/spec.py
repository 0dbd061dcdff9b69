"""Method specifications on the command line, e.g. `svip`, `fixed:k=3`, `auto+ouroboros:gamma=4`.

`POLICY[:KEY=VALUE,...][+PROPOSER[:KEY=VALUE,...]]` builds a specdec decoder (proposer `draft` by
default); `target-only` is plain decoding; `hf-*` names run transformers' own `generate` on the
same models: `hf-greedy` (no assistant), `hf-assisted` (its defaults: 20 tokens, confidence stop
0.4), `hf-assisted-heuristic`, `hf-assisted-k4` (constant k, no confidence stop) and
`hf-prompt-lookup`. A `-int8` suffix on an assisted method gives transformers the same int8 draft
that specdec's `draft:int8=true` uses (`HFModel.quantized`), for a like-for-like comparison.

A `#LABEL` suffix runs the same method again under another name: `target-only#control` is a
second plain decoder whose speedup over `target-only` in the same run measures the run's own noise
(an A/A control), against which the differences between methods can be read.

An `@coupled` suffix on a specdec method (before any label) samples in coupled mode
(`SamplingConfig.coupled`), e.g. `fixed:k=4@coupled` beside `fixed:k=4` compares the two
acceptance rules in one run at a temperature > 0.
"""

from __future__ import annotations

import re
from typing import Any

from specdec.bench.methods import HFGenerateMethod, SpecdecMethod
from specdec.cli.values import typed_params
from specdec.decoder import Decoder
from specdec.errors import ConfigurationError
from specdec.plugins import registry
from specdec.policy import ReferencePolicy

HF_HELP = "hf-greedy, hf-assisted, hf-assisted-heuristic, hf-assisted-kN, hf-prompt-lookup (assisted ones also with -int8)"


def _split(part: str) -> tuple[str, dict[str, str]]:
    name, _, raw = part.partition(":")
    params: dict[str, str] = {}
    for pair in filter(None, raw.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigurationError(f"method parameters are KEY=VALUE, got {pair!r} in {part!r}")
        params[key.strip()] = value.strip()
    return name.strip(), params


def check_method(spec: str) -> None:
    """Raise a `ConfigurationError` for a specification `build_method` would refuse (an unknown
    method, strategy or parameter, a value of the wrong type), without loading any model."""
    base, _ = _sampling_mode(_unlabelled(spec))
    if base == "target-only":
        return
    if base.startswith("hf-"):
        _hf_options(base)
        return
    (policy_name, policy_params), (proposer_name, proposer_params) = _strategies(base)
    reg = registry()
    reserved = ("model",) if reg.get("proposer", proposer_name).uses_draft_model else ()
    typed_params(reg, "proposer", proposer_name, proposer_params, reserved=reserved)
    typed_params(reg, "policy", policy_name, policy_params, reserved=reserved)


def check_batchable(spec: str) -> None:
    """Raise a `ConfigurationError` for a method that cannot decode a batch: of transformers' methods
    only `hf-greedy` can (its assisted and prompt-lookup generation take one prompt at a time), and
    no policy that must know each prompt's target output first (`ReferencePolicy`: the oracle)."""
    base, _ = _sampling_mode(_unlabelled(spec))
    if base == "target-only":
        return
    if base.startswith("hf-"):
        if base != "hf-greedy":
            raise ConfigurationError(f"{spec!r} cannot decode a batch (transformers runs it one prompt at a time); with --batch-size use hf-greedy")
        return
    (policy_name, _), _ = _strategies(base)
    if issubclass(registry().get("policy", policy_name).cls, ReferencePolicy):
        raise ConfigurationError(f"{spec!r} cannot decode a batch: its policy needs each prompt's target output before the prompt is decoded")


def build_method(spec: str, target, draft_loader) -> Any:
    """A benchmark method from its specification; `draft_loader()` gives the draft model."""
    spec = spec.strip()
    base = _unlabelled(spec)
    if base != spec:
        method = build_method(base, target, draft_loader)
        method.name = spec
        return method
    base, coupled = _sampling_mode(spec)
    if coupled:
        method = build_method(base, target, draft_loader)
        method.name, method.coupled = spec, True
        return method
    if spec == "target-only":
        return SpecdecMethod(spec, Decoder(target))
    if spec.startswith("hf-"):
        options, assisted, int8 = _hf_options(spec)
        if not assisted:
            return HFGenerateMethod(spec, target.model, options)
        draft = draft_loader()
        return HFGenerateMethod(spec, target.model, options, (draft.quantized() if int8 else draft).model)
    (policy_name, policy_params), (proposer_name, proposer_params) = _strategies(spec)
    reg = registry()
    reserved = ("model", "target")  # resources, not parameters
    draft = draft_loader() if reg.get("proposer", proposer_name).uses_draft_model else None
    # by name, so that each row of a batch gets strategies of its own over its row of the draft
    decoder = Decoder(
        target, policy=policy_name, proposer=proposer_name, draft=draft,
        policy_params=typed_params(reg, "policy", policy_name, policy_params, reserved=reserved),
        proposer_params=typed_params(reg, "proposer", proposer_name, proposer_params, reserved=reserved),
    )
    return SpecdecMethod(spec, decoder)


COUPLED = "@coupled"


def _sampling_mode(spec: str) -> tuple[str, bool]:
    """(the method without its `@coupled` suffix, whether it had one); refused on transformers' methods."""
    if not spec.endswith(COUPLED):
        return spec, False
    base = spec[: -len(COUPLED)].strip()
    if base.startswith("hf-"):
        raise ConfigurationError(f"{COUPLED} is a specdec sampling mode; transformers' method {base!r} cannot use it")
    return base, True


def _unlabelled(spec: str) -> str:
    """`METHOD` of `METHOD#LABEL` (`spec` itself without a label)."""
    spec = spec.strip()
    base, labelled, label = spec.partition("#")
    if labelled and (not label.strip() or not base.strip()):
        raise ConfigurationError(f"a method label is METHOD#LABEL with both parts, got {spec!r}")
    return base.strip()


def _strategies(spec: str) -> tuple[tuple[str, dict[str, str]], tuple[str, dict[str, str]]]:
    """((policy, its parameters), (proposer, its parameters)) of POLICY[:..][+PROPOSER[:..]]."""
    policy_part, _, proposer_part = spec.partition("+")
    return _split(policy_part), _split(proposer_part or "draft")


def _hf_options(spec: str) -> tuple[dict[str, Any], bool, bool]:
    """(`generate` options, whether it takes the draft as assistant, whether in int8) of an hf-* method."""
    if spec == "hf-greedy":
        return {}, False, False
    if spec == "hf-prompt-lookup":
        return {"prompt_lookup_num_tokens": 10}, False, False
    kind, int8 = (spec[: -len("-int8")], True) if spec.endswith("-int8") else (spec, False)
    if kind == "hf-assisted":
        return {"num_assistant_tokens": 20, "num_assistant_tokens_schedule": "constant", "assistant_confidence_threshold": 0.4}, True, int8
    if kind == "hf-assisted-heuristic":
        return {"num_assistant_tokens": 5, "num_assistant_tokens_schedule": "heuristic", "assistant_confidence_threshold": 0.0}, True, int8
    match = re.fullmatch(r"hf-assisted-k(\d+)", kind)
    if match and int(match.group(1)) >= 1:
        return {"num_assistant_tokens": int(match.group(1)), "num_assistant_tokens_schedule": "constant", "assistant_confidence_threshold": 0.0}, True, int8
    raise ConfigurationError(f"unknown transformers method {spec!r}; known: {HF_HELP}")
