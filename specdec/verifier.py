"""The only place that decides which draft tokens are kept.

Greedy (temperature 0): a draft token is kept iff it is the target's argmax; the first mismatch
is replaced by the target's argmax, and a fully accepted draft earns the argmax after it (bonus).

Sampling: each position is processed left to right with p = warp(target logits). A token drawn
from q is kept with probability min(1, p(x)/q(x)); on rejection the replacement is drawn from the
normalised residual max(0, p - q). A deterministic token (q is None) uses the one-hot form of the
same rule: draw y ~ p, keep x iff y == x, otherwise emit y. Both make every emitted token an exact
sample of the target (arXiv 2211.17192, 2302.01318). An accepted EOS ends the round
without a bonus token.

Branches (token trees): a draft may carry deterministic alternative continuations, verified in the
same target forward. Every emitted token is still an exact sample of p at its position (by the
rules above); the walk simply continues at the tree node holding that token, if there is one.
With several deterministic candidates at one position this is sample-and-match: draw y ~ p and
follow the branch whose token is y (greedy: the argmax).

Randomness: each draw names its `Site` (the absolute position `draft.start` + depth, its purpose,
the round's start), so keyed samplers give draws that do not depend on earlier rounds. With
`SamplingConfig.coupled` every draw at a position is a coupled draw on that position's noise and
every draft token is checked by the one-hot rule, whatever q it carries: the emitted token is then
the one target-only sampling draws there with the same seed.

The small rules are methods so that the test suite can plant the classic bugs in subclasses and
check that the exact-distribution test notices each of them.
"""

from __future__ import annotations

from typing import AbstractSet

import attrs
import torch

from specdec.draft import Draft
from specdec.sampling import SamplingConfig, checked_max, warp
from specdec.samplers import Purpose, Sampler, Site
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
        """Walk the draft's token tree (a plain chain without branches) from the root.

        At each node the emitted token e is an exact sample of p at that node: the draft's own
        token with its q goes through the p/q rule (e is the token or the residual draw); any other
        node draws e ~ p (the one-hot rule, and for several deterministic children sample-and-
        match: arXiv 2211.17192's rule with a one-hot q). The walk moves to the child holding e, if there is one, and
        otherwise stops with e as the correction (or the bonus at a leaf). Target logit row 0 is
        the root's, row j + 1 the one after tree node j.
        """
        n = len(draft)
        tree = draft.tree
        if target_logits.shape[0] != len(tree) + 1:
            what = f"{n} draft tokens" + (f" and {len(tree) - n} branch tokens" if len(tree) > n else "")
            raise ValueError(f"expected {len(tree) + 1} target logit rows for {what}, got {target_logits.shape[0]}")
        every = tuple(checked_max(target_logits, "the target model").tolist())
        argmax, tree_argmax = every[: n + 1], every[n + 1:]
        tokens: list[int] = []
        path: list[int] = []
        node = -1
        while True:
            children = tree.children(node)
            on_draft = node + 1 < n  # the draft's own next token hangs here (branch nodes are >= n)
            row = target_logits[node + 1]
            position = draft.start + len(tokens)  # the depth of the node's children
            if sampling.greedy:
                chosen = every[node + 1]
            elif sampling.coupled:  # the one-hot rule at every node, on the position's shared noise
                chosen = sampler.categorical(warp(row, sampling), Site(position, Purpose.COUPLED, draft.start))
            elif on_draft and draft.q_at(node + 1) is not None:
                site = Site(position, Purpose.ACCEPT, draft.start)
                _, chosen = self._sample_position(row, draft.tokens[node + 1], draft.q_at(node + 1), sampling, sampler, site)
            elif on_draft:
                chosen = sampler.categorical(warp(row, sampling), Site(position, Purpose.EMIT, draft.start))
            else:  # past the draft's own tokens: the bonus position (branches match against it)
                last_q = draft.q_at(node) if 0 <= node < n else None
                site = Site(position, Purpose.EMIT, draft.start)
                chosen = sampler.categorical(self.bonus_distribution(warp(row, sampling), last_q), site)
            tokens.append(chosen)
            child = children.get(chosen)
            if child is None:  # the correction, or the bonus token at a leaf
                return self._verdict(n, tokens, path, argmax, tree_argmax, chosen in eos_token_ids)
            path.append(child)
            if chosen in eos_token_ids:  # an accepted EOS ends the round without a bonus
                return self._verdict(n, tokens, path, argmax, tree_argmax, True)
            node = child

    @staticmethod
    def _verdict(n, tokens, path, argmax, tree_argmax, eos: bool) -> Verification:
        accepted = sum(1 for node in path if node < n)  # the draft's own nodes come first on a path
        return Verification(
            n, accepted, tuple(tokens), argmax, eos=eos, branch_tokens=len(path) - accepted,
            tree_path=tuple(path), tree_argmax=tree_argmax,
        )

    def _sample_position(
        self, logits: torch.Tensor, x: int, q: torch.Tensor | None, sampling: SamplingConfig, sampler: Sampler, site: Site
    ) -> tuple[bool, int]:
        """(kept, replacement) for one draft position at temperature > 0 (`site`: the coin's)."""
        p = warp(logits, sampling)
        emit = attrs.evolve(site, purpose=Purpose.EMIT)
        if q is None:
            y = sampler.categorical(p, emit)
            return y == x, y
        if sampler.accept(self.acceptance_probability(float(p[x]), float(q[x])), site):
            return True, x
        residual = self.residual(p, q)
        if not bool(residual.sum() > 0):  # p == q up to rounding: rejection had ~0 probability
            residual = p
        return False, sampler.categorical(residual, emit)

    # The rules, one method each (the test suite plants bugs by overriding them).
    def acceptance_probability(self, p_x: float, q_x: float) -> float:
        return 1.0 if p_x >= q_x else p_x / q_x

    def residual(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        r = torch.clamp(p - q, min=0.0)
        return r / r.sum()

    def bonus_distribution(self, p: torch.Tensor, last_q: torch.Tensor | None) -> torch.Tensor:
        return p
