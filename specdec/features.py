"""Features of the draft's next-token distribution and of the token drawn from it.

Computed lazily, on first access, from the draft's logits row: a policy that never looks
(fixed k) costs nothing, one that does pays a few vector ops over the vocabulary, once.
`DraftFeatures` is what a policy sees *before* a token is drawn (see specdec/policy.py for why
that matters); `TokenFeatures` adds the drawn token and its probability.
"""

from __future__ import annotations

import functools

import torch


class DraftFeatures:
    """The draft's distribution at one position of the round, from its untempered softmax.

    `entropy` is in nats, `top_prob`/`top_token` describe the argmax, `margin` is top-1 minus top-2
    probability, `hidden` is the draft's final hidden state when the policy set `wants_hidden`.
    A deterministic proposal (lookup, phrase) has no distribution: it reports the proposed token
    as `top_token` with probability 1 and entropy 0.
    """

    def __init__(
        self,
        position: int,
        logits: torch.Tensor | None = None,
        *,
        hidden: torch.Tensor | None = None,
        deterministic: bool = False,
        top_token: int | None = None,
        top_prob: float | None = None,
        entropy: float | None = None,
        margin: float | None = None,
    ) -> None:
        self.position = position
        self.hidden = hidden
        self.deterministic = deterministic
        self._logits = logits
        if logits is None:
            self.__dict__["_summary"] = (
                -1 if top_token is None else int(top_token),
                1.0 if top_prob is None else float(top_prob),
                0.0 if entropy is None else float(entropy),
                1.0 if margin is None else float(margin),
            )

    @functools.cached_property
    def _probs(self) -> torch.Tensor:
        return torch.softmax(self._logits.float(), dim=-1)

    @functools.cached_property
    def _summary(self) -> tuple[int, float, float, float]:
        logp = torch.log_softmax(self._logits.float(), dim=-1)
        probs = logp.exp()
        self.__dict__["_probs"] = probs
        entropy = -(probs * logp.nan_to_num(neginf=0.0)).sum()
        top = torch.topk(probs, min(2, probs.numel()))
        second = top.values[1] if probs.numel() > 1 else torch.zeros(())
        token = int(top.indices[0])
        first, ent, margin = torch.stack([top.values[0], entropy, top.values[0] - second]).tolist()
        return token, first, max(ent, 0.0), margin

    @property
    def top_token(self) -> int:
        return self._summary[0]

    @property
    def top_prob(self) -> float:
        return self._summary[1]

    @property
    def entropy(self) -> float:
        return self._summary[2]

    @property
    def margin(self) -> float:
        return self._summary[3]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(position={self.position}, top_token={self.top_token}, top_prob={self.top_prob:.3g}, "
            f"entropy={self.entropy:.3g}, margin={self.margin:.3g})"
        )


class TokenFeatures(DraftFeatures):
    """`DraftFeatures` plus the token drawn (or proposed) and its draft probability `prob`.

    `survival` is the proposer's estimate that the verifier accepts the token given that it
    accepts every draft token before it (None: no estimate); `reach` is the chance that the token
    is used, the product of the survivals of the round's draft tokens up to it (None without a
    survival). The policy's `payoff` prices them (see specdec/payoff.py).
    """

    def __init__(
        self,
        position: int,
        token: int,
        logits: torch.Tensor | None = None,
        *,
        prob: float | None = None,
        survival: float | None = None,
        reach: float | None = None,
        **kw,
    ) -> None:
        if logits is None and prob is not None:
            kw.setdefault("top_prob", prob)
            kw.setdefault("top_token", token)
        super().__init__(position, logits, **kw)
        self.token = int(token)
        self._prob = prob
        self.survival = survival
        self.reach = reach

    @property
    def prob(self) -> float:
        if self._prob is None:
            self._prob = float(self._probs[self.token]) if self._logits is not None else 1.0
        return self._prob

    def __repr__(self) -> str:
        return f"TokenFeatures(position={self.position}, token={self.token}, prob={self.prob:.3g}, entropy={self.entropy:.3g}, margin={self.margin:.3g})"


def draft_features(logits: torch.Tensor, position: int, hidden: torch.Tensor | None = None) -> DraftFeatures:
    return DraftFeatures(position, logits, hidden=hidden)


def token_features(logits: torch.Tensor, token: int, position: int, hidden: torch.Tensor | None = None, *, before: DraftFeatures | None = None) -> TokenFeatures:
    """Features of `token` under one row of draft logits, sharing work already done by `before`."""
    features = TokenFeatures(position, token, logits, hidden=hidden)
    if before is not None:
        for key in ("_summary", "_probs"):
            if key in before.__dict__:
                features.__dict__[key] = before.__dict__[key]
    return features


def deterministic_features(token: int, position: int, *, survival: float | None = None, reach: float | None = None) -> TokenFeatures:
    """Features of a token proposed without a distribution (treated as certain by the draft)."""
    return TokenFeatures(
        position, token, prob=1.0, entropy=0.0, margin=1.0, deterministic=True, survival=survival, reach=reach
    )
