"""Attention rows of a token tree (integrations/tree_attention.py): a node sees the cache, its
ancestors and itself; leaving out the rows of a leading chain loses nothing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from specdec.integrations.tree_attention import full_mask, leading_chain, tree_mask


def test_a_worked_tree():
    # a chain of three, then a node on node 1 and a node on that node
    parents = [-1, 0, 1, 1, 3]
    assert leading_chain(parents) == 3
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 1, 0],
            [1, 1, 1, 1, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(tree_mask(parents, cached=2), expected)
    assert torch.equal(tree_mask(parents, cached=2, causal_rows=3), expected[3:])


@st.composite
def trees(draw):
    """Parents of a tree whose first nodes form a chain (a prompt), the rest hanging anywhere."""
    chain = draw(st.integers(1, 6))
    parents = [i - 1 for i in range(chain)]
    for i in range(chain, chain + draw(st.integers(0, 6))):
        parents.append(draw(st.integers(0, i - 1)))
    return parents


@given(trees(), st.integers(0, 3))
def test_the_chain_rows_put_back_give_the_whole_mask(parents, cached):
    rows = leading_chain(parents)
    whole = tree_mask(parents, cached)
    for causal_rows in range(rows + 1):
        assert torch.equal(full_mask(tree_mask(parents, cached, causal_rows), causal_rows, cached), whole)


def test_rows_that_are_not_a_chain_cannot_be_left_out():
    with pytest.raises(ValueError, match="not a chain"):
        tree_mask([-1, 0, 0, 2], cached=0, causal_rows=3)
