"""The target's own output distribution, computed directly from toy tables.

Written independently of specdec's sampling code (plain Python floats), so a bug there cannot
hide by appearing on both sides of the comparison.
"""

from __future__ import annotations

import math
from typing import Sequence

from specdec.sampling import TOP_P_TIE


def reference_warp(logits: Sequence[float], temperature: float, top_k: int | None, top_p: float | None) -> list[float]:
    top = max(logits)  # shifted first: a tiny temperature gives the limit (uniform over the maxima), not inf - inf
    scores = [0.0 if x == top else (x - top) / temperature if x != -math.inf else -math.inf for x in logits]
    if top_k is not None and top_k < len(scores):
        kth = sorted(scores, reverse=True)[top_k - 1]
        scores = [s if s >= kth else -math.inf for s in scores]
    if top_p is not None and top_p < 1.0:
        probs = _softmax(scores)
        order = sorted(range(len(probs)), key=lambda i: -probs[i])
        keep, mass, least = set(), 0.0, math.inf
        for i in order:  # at least one token, and every token as likely as the last one kept
            if keep and mass >= top_p - TOP_P_TIE and probs[i] < least:  # TOP_P_TIE: see specdec.sampling.warp
                break
            keep.add(i)
            mass += probs[i]
            least = probs[i]
        scores = [s if i in keep else -math.inf for i, s in enumerate(scores)]
    return _softmax(scores)


def _softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) if s != -math.inf else 0.0 for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def target_distribution(row, prompt: Sequence[int], max_new: int, eos: frozenset[int], temperature: float,
                        top_k: int | None, top_p: float | None) -> dict[tuple[int, ...], float]:
    """Exact distribution over generated sequences of target-only decoding.

    `row(prefix)` returns the target's logits after `prefix`. Greedy (temperature 0) is argmax
    with the lowest index winning ties, as torch.argmax does.
    """
    out: dict[tuple[int, ...], float] = {}

    def walk(seq: list[int], generated: tuple[int, ...], prob: float) -> None:
        if len(generated) == max_new or (generated and generated[-1] in eos):
            out[generated] = out.get(generated, 0.0) + prob
            return
        logits = [float(x) for x in row(seq)]
        if temperature == 0:
            best = max(range(len(logits)), key=lambda i: (logits[i], -i))
            walk(seq + [best], generated + (best,), prob)
            return
        for token, p in enumerate(reference_warp(logits, temperature, top_k, top_p)):
            if p > 0:
                walk(seq + [token], generated + (token,), prob * p)

    walk(list(prompt), (), 1.0)
    return out
