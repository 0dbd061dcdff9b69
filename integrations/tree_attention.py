"""Attention rows of a token tree fed in one forward, and the plain causal chain that may lead it.

A tree node attends to the whole cache, its ancestors and itself, at the position of its depth.
On an empty cache the first round feeds the prompt and the draft tree together; the prompt is a
chain, which is ordinary causal attention. Describing it row by row would force every layer's
attention onto SDPA's masked path over a prompt-sized square, which is slower than the fused causal
path, so the chain's rows are left out of the mask (`causal_rows`) and only the nodes after it are
masked.
"""

from __future__ import annotations

from typing import Sequence

import torch


def leading_chain(parents: Sequence[int]) -> int:
    """How many leading nodes form a plain chain (node i's parent is node i - 1, the first a root)."""
    count = 0
    while count < len(parents) and parents[count] == count - 1:
        count += 1
    return count


def tree_mask(parents: Sequence[int], cached: int, causal_rows: int = 0) -> torch.Tensor:
    """[n - causal_rows, cached + n] booleans, on the CPU (the caller moves the mask to its device
    in one copy): what each node after the first `causal_rows` attends to (the cache, its
    ancestors, itself). The first `causal_rows` nodes must be a
    leading chain (`leading_chain`); nodes after it may hang anywhere on it."""
    n = len(parents)
    if not 0 <= causal_rows <= leading_chain(parents):
        raise ValueError(f"the first {causal_rows} nodes are not a chain")
    allowed = torch.zeros(n - causal_rows, cached + n, dtype=torch.bool, device="cpu")  # built row by row: on the host
    allowed[:, :cached] = True
    for i in range(causal_rows, n):
        row, parent = allowed[i - causal_rows], parents[i]
        if parent >= causal_rows:
            row[cached:] = allowed[parent - causal_rows, cached:]
        elif parent >= 0:  # hangs on the chain: sees it up to its parent
            row[cached : cached + parent + 1] = True
        row[cached + i] = True
    return allowed


def full_mask(allowed: torch.Tensor, causal_rows: int, start: int) -> torch.Tensor:
    """`allowed` with the rows of its leading causal chain put back (for attention that takes
    one mask for all rows)."""
    if not causal_rows:
        return allowed
    chain = torch.ones(causal_rows, allowed.shape[1], dtype=torch.bool, device=allowed.device).tril(start)
    return torch.cat((chain, allowed))
