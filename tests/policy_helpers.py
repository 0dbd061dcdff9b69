"""Small builders shared by the per-policy tests: a round state, token features, a verification."""

from __future__ import annotations

from specdec import RoundState, Verification
from specdec.features import TokenFeatures

STATE = RoundState(context_length=3, generated=0, remaining=100)


def feats(prob: float = 0.5, entropy: float = 0.5, position: int = 0, token: int = 0) -> TokenFeatures:
    return TokenFeatures(position=position, token=token, prob=prob, entropy=entropy, margin=0.0)


def verdict(
    drafted: int, accepted: int, *, draft: float = 0.0, verify: float = 0.0, context: int = 0, forwards: int = 0
) -> Verification:
    """A verification; `forwards` is the number of draft-model forwards the round made."""
    tokens = tuple(range(min(accepted + 1, drafted + 1)))
    return Verification(
        drafted, accepted, tokens, draft_seconds=draft, verify_seconds=verify, context_length=context, draft_forwards=forwards
    )
