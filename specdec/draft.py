"""What a proposer hands to the verifier."""

from __future__ import annotations

import attrs
import torch

from specdec.features import TokenFeatures


@attrs.frozen
class Draft:
    """Proposed tokens for one round.

    `q[i]` is the exact distribution token i was sampled from (after the same warping as the
    target), or None when the token was proposed deterministically (argmax, lookup, phrase): the
    verifier then uses the one-hot rule. In greedy mode `q` may be all None.
    """

    tokens: tuple[int, ...] = ()
    q: tuple[torch.Tensor | None, ...] = attrs.field(default=(), eq=False)
    features: tuple[TokenFeatures, ...] = attrs.field(default=(), eq=False)

    def __attrs_post_init__(self) -> None:
        if self.q and len(self.q) != len(self.tokens):
            raise ValueError(f"draft has {len(self.tokens)} tokens but {len(self.q)} q rows")

    def __len__(self) -> int:
        return len(self.tokens)

    def q_at(self, i: int) -> torch.Tensor | None:
        return self.q[i] if self.q else None


EMPTY_DRAFT = Draft()
