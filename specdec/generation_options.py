"""transformers' generation arguments (`GenerationConfig` or its keywords) as specdec's settings.

Two readings, so that neither kind of caller is surprised:
- given a `generation_config` or `do_sample`, the arguments mean what they mean to transformers'
  `generate`: values come from the keywords, then the config, then the model's own generation
  config, then transformers' defaults (`GenerationConfig._get_default_generation_params`:
  temperature 1.0, top_k 50, top_p 1.0 when sampling), and `do_sample=False` is greedy whatever
  the temperature;
- otherwise specdec's keywords as before: `temperature=0` (the default) is greedy, no top-k.
An option that would change the distribution in a way the verifier cannot reproduce exactly (beam
search, repetition penalty, several sequences, ...) is refused by name instead of ignored.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import attrs

from specdec.errors import ConfigurationError, InputError
from specdec.sampling import SamplingConfig

SEEDS = (-(2**63), 2**64 - 1)  # the seeds torch.Generator.manual_seed takes (64 bits, signed or not)
DEFAULT_MAX_NEW_TOKENS = 128  # when neither max_new_tokens nor max_length is given
TRANSFORMERS_DEFAULTS: dict[str, Any] = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0}

# options specdec cannot apply, with the values that mean "off" (None always does)
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "num_beams": (1,), "num_beam_groups": (1,), "diversity_penalty": (0.0,), "num_return_sequences": (1,),
    "repetition_penalty": (1.0,), "encoder_repetition_penalty": (1.0,), "no_repeat_ngram_size": (0,),
    "min_new_tokens": (0,), "min_length": (0,), "min_p": (), "top_h": (), "typical_p": (1.0,),
    "epsilon_cutoff": (0.0,), "eta_cutoff": (0.0,), "bad_words_ids": (), "suppress_tokens": (),
    "begin_suppress_tokens": (), "sequence_bias": (), "forced_bos_token_id": (), "forced_eos_token_id": (),
    "guidance_scale": (1.0,), "watermarking_config": (), "exponential_decay_length_penalty": (), "max_time": (),
    "penalty_alpha": (), "dola_layers": (), "constraints": (), "force_words_ids": (), "token_healing": (False,),
    "output_scores": (False,), "output_logits": (False,), "return_dict_in_generate": (False,),
    "remove_invalid_values": (False,),
}
USED = ("do_sample", "temperature", "top_k", "top_p", "max_new_tokens", "max_length", "eos_token_id", "stop_strings")
# accepted and without effect here: tokens, caches and transformers' own assisted generation
IGNORED = frozenset({
    "tokenizer", "pad_token_id", "bos_token_id", "decoder_start_token_id", "use_cache", "cache_implementation",
    "cache_config", "max_cache_len", "compile_config", "disable_compile", "output_attentions", "output_hidden_states",
    "early_stopping", "length_penalty", "renormalize_logits", "low_memory", "prefill_chunk_size",
    "num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold", "assistant_lookbehind",
    "target_lookbehind", "prompt_lookup_num_tokens", "max_matching_ngram_size", "is_assistant",
    "assistant_early_exit", "assistant_ensemble_weight", "encoder_no_repeat_ngram_size", "transformers_version",
})


@attrs.frozen
class GenerationOptions:
    """What one call asks for, in specdec's terms."""

    sampling: SamplingConfig
    max_new_tokens: int | None  # None: max_length (prompt included) sets the limit
    max_length: int | None
    stop: tuple[str, ...] = ()
    eos: frozenset[int] | None = None  # None: the target's own end tokens

    def new_tokens(self, prompt_length: int) -> int:
        """Tokens to generate at most for a prompt of `prompt_length` tokens."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        if self.max_length is None:
            return DEFAULT_MAX_NEW_TOKENS
        if self.max_length <= prompt_length:
            raise InputError(f"max_length={self.max_length} leaves no room after the prompt's {prompt_length} tokens; use max_new_tokens")
        return self.max_length - prompt_length


def resolve_options(
    *,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    coupled: bool = False,
    stop: Sequence[str] = (),
    generation_config: Any = None,
    model_defaults: Any = None,
    options: Mapping[str, Any] | None = None,
) -> GenerationOptions:
    """specdec's settings from `generate`'s arguments; `options` are transformers' other keywords."""
    keywords = dict(options or {})
    unknown = sorted(k for k in keywords if k not in UNSUPPORTED and k not in USED and k not in IGNORED)
    if unknown:
        raise ConfigurationError(f"generate() got an unknown option {unknown[0]!r}")
    explicit = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    keywords.update({k: v for k, v in explicit.items() if v is not None})
    transformers_style = generation_config is not None or keywords.get("do_sample") is not None
    layers = [keywords, _fields(generation_config)]
    if transformers_style:
        layers += [_fields(model_defaults), TRANSFORMERS_DEFAULTS]

    def value(name: str, among: list[Mapping[str, Any]] = layers) -> Any:
        return next((layer[name] for layer in among if layer.get(name) is not None), None)

    for name, off in UNSUPPORTED.items():
        found = value(name)
        if found is not None and found not in off:
            raise ConfigurationError(f"{name}={found!r} is not supported: exact speculative decoding applies temperature, top_k and top_p only")
    sampling = _sampling(value) if transformers_style else SamplingConfig(temperature or 0.0, top_k, top_p)
    sampling = attrs.evolve(sampling, coupled=coupled)  # specdec's own option, in either reading
    user = layers[:2]  # the model's own end tokens are the target's already
    return GenerationOptions(
        sampling,
        _positive("max_new_tokens", value("max_new_tokens")),
        _positive("max_length", value("max_length")),
        stop_strings(stop) + stop_strings(value("stop_strings", user), "stop_strings"),
        _token_set(value("eos_token_id", user)),
    )


def checked_seed(seed: Any) -> int | None:
    """`seed` if it is None or an integer torch can seed with; else a `ConfigurationError`."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"seed must be an integer or None, got {type(seed).__name__} {seed!r}")
    if not SEEDS[0] <= seed <= SEEDS[1]:
        raise ConfigurationError(f"seed must fit in 64 bits ({SEEDS[0]} to {SEEDS[1]}), got {seed}")
    return seed


def _fields(config: Any) -> dict[str, Any]:
    """A transformers `GenerationConfig` (or None) as a dict of its set values."""
    if config is None:
        return {}
    from transformers import GenerationConfig

    if not isinstance(config, GenerationConfig):
        raise ConfigurationError(f"generation_config must be a transformers GenerationConfig, got {type(config).__name__}")
    return {k: v for k, v in vars(config).items() if not k.startswith("_") and v is not None}


def _sampling(value: Any) -> SamplingConfig:
    if not value("do_sample"):
        return SamplingConfig()  # greedy, as transformers: temperature and top-k/p are not read
    temperature = float(value("temperature"))
    if temperature <= 0:
        raise ConfigurationError(f"do_sample=True needs temperature > 0, got {temperature!r} (do_sample=False is greedy)")
    top_k = value("top_k") or None  # transformers: 0 disables top-k
    top_p = value("top_p")
    return SamplingConfig(temperature, top_k, None if top_p >= 1.0 else float(top_p))


def _positive(name: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def stop_strings(value: Any, name: str = "stop") -> tuple[str, ...]:
    """A stop string or a sequence of them as a tuple: a str is one stop string, never split into
    its characters; anything but strings is a `ConfigurationError`."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigurationError(f"{name} must be a string or a list of strings, got {type(value).__name__} {value!r}")
    strings = tuple(value)
    odd = [s for s in strings if not isinstance(s, str)]
    if odd:
        raise ConfigurationError(f"{name} must hold strings only, got {type(odd[0]).__name__} {odd[0]!r}")
    return strings


def _token_set(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    ids = [value] if isinstance(value, int) else list(value)
    if not ids or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in ids):
        raise ConfigurationError(f"eos_token_id must be a token id or a list of them, got {value!r}")
    return frozenset(ids)
