"""The only place that decides which draft tokens are kept.

Greedy (temperature 0): a draft token is kept iff it is the target's argmax; the first mismatch
is replaced by the target's argmax, and a fully accepted draft earns the argmax after it (bonus).

Sampling: each position is processed left to right with p = warp(target logits). A token drawn
from q is kept with probability min(1, p(x)/q(x)); on rejection the replacement is drawn from the
normalised residual max(0, p - q). A deterministic token (q is None) uses the one-hot form of the
same rule: draw y ~ p, keep x iff y == x, otherwise emit y. Both make every emitted token an exact
sample of the target (Leviathan et al. 2023; Chen et al. 2023). An accepted EOS ends the round
without a bonus token.

The small rules are methods so that the test suite can plant the classic bugs in subclasses and
check that the exact-distribution test notices each of them.
"""

from __future__ import annotations

from typing import AbstractSet

import torch

from specdec.draft import Draft
from specdec.sampling import SamplingConfig, checked_max, warp
from specdec.samplers import Sampler
from specdec.verification import Verification


class Verifier:
    """Speculative sampling with greedy, stochastic and one-hot (deterministic) rules."""

    def verify(
        self,
        draft: Draft,
        target_logits: torch.Tensor,
        sampling: SamplingConfig,
        sampler: Sampler,
        eos_token_ids: AbstractSet[int] = frozenset(),
    ) -> Verification:
        n = len(draft)
        if target_logits.shape[0] != n + 1:
            raise ValueError(f"expected {n + 1} target logit rows for {n} draft tokens, got {target_logits.shape[0]}")
        argmax = tuple(checked_max(target_logits, "the target model").tolist())
        tokens: list[int] = []
        for i, x in enumerate(draft.tokens):
            if sampling.greedy:
                kept, replacement = x == argmax[i], argmax[i]
            else:
                kept, replacement = self._sample_position(target_logits[i], x, draft.q_at(i), sampling, sampler)
            if not kept:
                tokens.append(replacement)
                return Verification(n, i, tuple(tokens), argmax, eos=replacement in eos_token_ids)
            tokens.append(x)
            if x in eos_token_ids:
                return Verification(n, i + 1, tuple(tokens), argmax, eos=True)
        if sampling.greedy:
            bonus = argmax[n]
        else:
            p = warp(target_logits[n], sampling)
            bonus = sampler.categorical(self.bonus_distribution(p, draft.q_at(n - 1) if n else None))
        tokens.append(bonus)
        return Verification(n, n, tuple(tokens), argmax, eos=bonus in eos_token_ids)

    def _sample_position(
        self, logits: torch.Tensor, x: int, q: torch.Tensor | None, sampling: SamplingConfig, sampler: Sampler
    ) -> tuple[bool, int]:
        """(kept, replacement) for one draft position at temperature > 0."""
        p = warp(logits, sampling)
        if q is None:
            y = sampler.categorical(p)
            return y == x, y
        if sampler.accept(self.acceptance_probability(float(p[x]), float(q[x]))):
            return True, x
        residual = self.residual(p, q)
        if not bool(residual.sum() > 0):  # p == q up to rounding: rejection had ~0 probability
            residual = p
        return False, sampler.categorical(residual)

    # The rules, one method each (the test suite plants bugs by overriding them).
    def acceptance_probability(self, p_x: float, q_x: float) -> float:
        return 1.0 if p_x >= q_x else p_x / q_x

    def residual(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        r = torch.clamp(p - q, min=0.0)
        return r / r.sum()

    def bonus_distribution(self, p: torch.Tensor, last_q: torch.Tensor | None) -> torch.Tensor:
        return p
