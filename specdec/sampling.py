"""Sampling settings and the one logits -> probabilities transform applied to target and draft.

Speculative sampling is exact only if the draft's q is the distribution the draft token was drawn
from and p is the target's distribution after the *same* processing. Both go through `warp`.
"""

from __future__ import annotations

import math

import attrs
import torch

from specdec.errors import ConfigurationError
from specdec.policy import boolean


def _check_temperature(_: object, __: attrs.Attribute, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"temperature must be a finite number >= 0, got {value!r}")


def _check_top_k(_: object, __: attrs.Attribute, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"top_k must be a positive integer or None, got {value!r}")


def _check_top_p(_: object, __: attrs.Attribute, value: float | None) -> None:
    if value is not None and not (0.0 < value <= 1.0):
        raise ConfigurationError(f"top_p must be in (0, 1] or None, got {value!r}")


@attrs.frozen
class SamplingConfig:
    """How tokens are chosen: temperature 0 means greedy (argmax), otherwise sampling.

    `coupled` (sampling only): the draft and the target draw each position's token by Gumbel-max on
    the same keyed noise, and draft tokens are verified by the one-hot rule, so the output is token
    for token what target-only sampling with the same seed gives, whatever the policy, proposer or
    draft lengths (`specdec.samplers`). Without it, the standard rule min(1, p/q) accepts more
    sampled draft tokens but the output depends on the draft lengths. Greedy decoding already has
    that identity: there `coupled` changes nothing.
    """

    temperature: float = attrs.field(default=0.0, converter=float, validator=_check_temperature)
    top_k: int | None = attrs.field(default=None, validator=_check_top_k)
    top_p: float | None = attrs.field(default=None, validator=_check_top_p)
    coupled: bool = attrs.field(default=False, validator=boolean)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def checked_max(logits: torch.Tensor, who: str) -> torch.Tensor:
    """Argmax of each row, raising if a row holds NaN or +inf or is all -inf.

    One reduction serves both: NaN and +inf propagate into the row maximum, so checking the maxima
    costs nothing beyond the argmax the caller needs anyway.
    """
    values, indices = logits.max(dim=-1)
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        from specdec.errors import NonFiniteLogitsError

        raise NonFiniteLogitsError(f"{who} produced NaN, +inf or all -inf logits")
    return indices


TOP_P_TIE = 1e-6  # float32 rounding of a cumulative mass stays far below this


def warp(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """Probabilities after temperature, top-k and top-p (in that order), for a [V] or [n, V] tensor.

    Every rule keeps at least one token and decides ties by value, never by position, as
    transformers' warpers do where their result does not depend on sort order:
    - temperature divides the logits after subtracting the row's maximum, so a temperature so small
      that the quotients overflow (1e-45) gives the limit distribution, uniform over the maxima,
      instead of NaN;
    - top-k keeps every token whose score is at least the k-th largest, so a tie with the k-th
      keeps them all (transformers' `TopKLogitsWarper`);
    - top-p keeps the smallest set of most likely tokens whose mass reaches `top_p`, at least one
      (transformers' `min_tokens_to_keep=1`), plus every token as likely as the least likely of
      them (transformers drops tied tokens in the order its sort leaves them, which is arbitrary).
      A mass within `TOP_P_TIE` below `top_p` counts as reaching it, so that float rounding cannot
      decide a tie (probabilities 0.8 / 0.2 with top_p 0.8 sum to 0.8 +- 1 ulp depending on the
      order of operations, and two exact implementations then disagree about the second token).
    """
    if config.greedy:
        raise ConfigurationError("warp() is for sampling; greedy decoding uses argmax")
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    scores = torch.where(shifted == 0, shifted, shifted / config.temperature)  # the maxima stay 0, not 0/0
    if config.top_k is not None and config.top_k < scores.shape[-1]:
        kth = torch.topk(scores, config.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if config.top_p is not None and config.top_p < 1.0:
        probs = torch.softmax(scores, dim=-1)
        sorted_probs = torch.sort(probs, dim=-1, descending=True).values
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        kept = (mass_before < config.top_p - TOP_P_TIE).sum(dim=-1, keepdim=True).clamp(min=1)
        least = sorted_probs.gather(-1, kept - 1)
        scores = scores.masked_fill(probs < least, -math.inf)
    return torch.softmax(scores, dim=-1)
