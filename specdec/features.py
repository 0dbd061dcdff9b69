"""Per-token features of a draft token, computed once by the proposer for the length policy."""

from __future__ import annotations

import attrs
import torch


@attrs.frozen
class TokenFeatures:
    """What a length policy may look at for one drafted token (never the target's distribution).

    `prob`, `entropy` (nats) and `margin` (top-1 minus top-2 probability) come from the draft's
    untempered softmax, so they mean the same thing in greedy and sampling mode.
    `deterministic` marks tokens proposed without a distribution (lookup, phrases).
    """

    position: int  # 0-based index of the token within the round's draft
    token: int
    prob: float
    entropy: float
    margin: float
    hidden: torch.Tensor | None = attrs.field(default=None, eq=False, repr=False)
    deterministic: bool = False


def token_features(logits: torch.Tensor, token: int, position: int, hidden: torch.Tensor | None = None) -> TokenFeatures:
    """Features of `token` under one row of draft logits; a few vector ops, no Python per entry."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp.nan_to_num(neginf=0.0)).sum()
    top2 = torch.topk(probs, 2).values if probs.numel() > 1 else torch.cat([probs, probs.new_zeros(1)])
    values = torch.stack([probs[token], entropy, top2[0] - top2[1]]).tolist()
    return TokenFeatures(
        position=position, token=int(token), prob=values[0], entropy=max(values[1], 0.0), margin=values[2], hidden=hidden
    )


def deterministic_features(token: int, position: int) -> TokenFeatures:
    """Features of a token proposed without a distribution (treated as certain by the proposer)."""
    return TokenFeatures(position=position, token=int(token), prob=1.0, entropy=0.0, margin=1.0, deterministic=True)
