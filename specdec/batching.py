"""What a batch call takes per prompt, checked: token limits, samplers, the number of rows in flight.

`Decoder.generate(list)` decodes each prompt as if alone; these helpers turn the call's arguments
into one value per prompt (a limit, a sampler keyed by the prompt's index in the list) and check
`batch_size`, with a one-line error for anything else.
"""

from __future__ import annotations

import numbers
from typing import Any

from specdec.errors import ConfigurationError, InputError
from specdec.samplers import Sampler, TorchSampler, fresh_seed

MAX_ROWS = 16  # rows in flight when batch_size is not given


def per_prompt_limits(max_new_tokens: Any, count: int) -> list[Any]:
    """`max_new_tokens` for each of `count` prompts: one value for all, or a list of one per prompt."""
    if not isinstance(max_new_tokens, (list, tuple)):
        return [max_new_tokens] * count
    if len(max_new_tokens) != count:
        raise InputError(f"max_new_tokens holds {len(max_new_tokens)} values for {count} prompts; give one per prompt or one for all")
    return list(max_new_tokens)


def per_prompt_samplers(sampler: Any, seed: int | None, count: int, greedy: bool) -> list[Sampler]:
    """A sampler per prompt: prompt i draws as sequence i of the seed (`TorchSampler`), so that
    prompt 0 draws as a call with that prompt alone; `sampler=` must then be a list of one per prompt."""
    if sampler is not None:
        if not isinstance(sampler, (list, tuple)) or len(sampler) != count or not all(isinstance(s, Sampler) for s in sampler):
            raise ConfigurationError(f"a batch takes sampler= as a list of {count} samplers, one per prompt")
        return list(sampler)
    if seed is None and not greedy:  # one seed for the whole call, drawn as a single call draws it
        seed = fresh_seed()
    return [TorchSampler(seed, sequence=i) for i in range(count)]


def rows_in_flight(batch_size: Any, count: int, batched_target: bool, target_name: str) -> int:
    """How many prompts decode at once: `batch_size` (default: all, up to `MAX_ROWS`) and at most
    one for a target that holds a single sequence."""
    if batch_size is None:
        return min(count, MAX_ROWS) if batched_target else 1
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if batch_size > 1 and not batched_target:
        raise ConfigurationError(f"the target {target_name!r} holds one sequence (it is not a BatchModel): use batch_size=1")
    return min(int(batch_size), count)


def check_batch_call(streamer: Any, input_ids: Any, attention_mask: Any) -> None:
    """Arguments that describe one sequence, refused with a list of prompts."""
    if input_ids is not None or attention_mask is not None:
        raise InputError("a list of prompts holds the prompts; input_ids= and attention_mask= describe one prompt")
    if streamer is not None:
        raise ConfigurationError("streamer= follows one sequence; stream(list) yields (prompt index, tokens) for a batch")
