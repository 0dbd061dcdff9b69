"""The lean llama forward over a batch of ragged rows equals each row's own forward.

Rows of different lengths are fed together (`LeanLlama.run_rows`): prompts, chain steps of
different sizes, a row cropped back, a token tree in one row beside chains in the others, a tree
path kept in one row, and a forward over some rows only, in another order. Each row's outputs
must match the same row fed alone through `run` (to float32 rounding: the batch multiplies more
rows at once, which can pick another GEMM kernel), and must not depend on its neighbours' tokens
at all (bit for bit).
"""

from __future__ import annotations

import pytest
import torch

from specdec.integrations.lean_llama import LeanLlama, RowFeed
from specdec.integrations.tree_attention import tree_mask
from tests.models import real_model

TOLERANCE = 2e-4  # float32 rounding of different GEMM kernels; logits are O(10)


def random_tokens(generator: torch.Generator, vocab: int, n: int) -> list[int]:
    return torch.randint(3, vocab, (n,), generator=generator).tolist()


def rounds(vocab: int, seed: int = 0) -> list[list[RowFeed]]:
    """The batched forwards of the test, each a list of feeds (rows 0-2)."""
    g = torch.Generator().manual_seed(seed)
    parents = [-1, 0, -1, 2, 3]
    tree_start = 47 + 4
    tree = RowFeed(1, random_tokens(g, vocab, 5), tree_start, keep=5,
                   positions=torch.tensor([tree_start + d for d in (0, 1, 0, 1, 2)]), allowed=tree_mask(parents, tree_start))
    return [
        [RowFeed(0, random_tokens(g, vocab, 30), 0, keep=2), RowFeed(1, random_tokens(g, vocab, 47), 0, keep=2),
         RowFeed(2, random_tokens(g, vocab, 12), 0, keep=2)],
        [RowFeed(0, random_tokens(g, vocab, 1), 30), RowFeed(1, random_tokens(g, vocab, 4), 47, keep=4),
         RowFeed(2, random_tokens(g, vocab, 2), 12, keep=2)],
        [RowFeed(0, random_tokens(g, vocab, 3), 29, keep=3), tree,  # row 0 cropped back by two
         RowFeed(2, random_tokens(g, vocab, 5), 14, keep=5)],
        # row 1 keeps its tree's path 2 -> 3 (`keep` below), so it continues from 53
        [RowFeed(0, random_tokens(g, vocab, 2), 32, keep=2), RowFeed(1, random_tokens(g, vocab, 2), 53, keep=2),
         RowFeed(2, random_tokens(g, vocab, 2), 19, keep=2)],
        [RowFeed(2, random_tokens(g, vocab, 3), 21, keep=3), RowFeed(0, random_tokens(g, vocab, 1), 34)],  # some rows, reordered
    ]


TREE_PATH = (1, 51, [51 + 2, 51 + 3])  # row, kept length, entries kept after it (after the third round)


def batched(stack: LeanLlama, plan: list[list[RowFeed]]) -> list[dict[int, torch.Tensor]]:
    """{row: its last hidden states} per round, all rows of a round in one forward."""
    out = []
    with torch.inference_mode():
        for number, feeds in enumerate(plan):
            out.append({feed.row: hidden for feed, (hidden, _) in zip(feeds, stack.run_rows(feeds))})
            if number == 2:
                stack.keep(*TREE_PATH[1:], row=TREE_PATH[0])
    return out


def alone(model, plan: list[list[RowFeed]]) -> list[dict[int, torch.Tensor]]:
    """The same, each row fed through `run` on a stack of its own."""
    stacks = {row: model.stack.sibling() for row in (0, 1, 2)}
    out = []
    with torch.inference_mode():
        for number, feeds in enumerate(plan):
            out.append({feed.row: stacks[feed.row].run(feed.tokens, feed.start, feed.keep, feed.positions, feed.allowed)[0]
                        for feed in feeds})
            if number == 2:
                stacks[TREE_PATH[0]].keep(*TREE_PATH[1:])
    return out


@pytest.mark.parametrize("name", ["stories260K", pytest.param("smollm2-draft", marks=pytest.mark.slow)])
def test_a_batch_of_ragged_rows_gives_each_row_its_own_forward(name):
    model = real_model(name)
    plan = rounds(model.vocab_size)
    together, apart = batched(model.stack.sibling(), plan), alone(model, plan)
    for number, (got, expected) in enumerate(zip(together, apart)):
        assert got.keys() == expected.keys()
        for row in got:
            a, b = model.head(got[row]), model.head(expected[row])
            assert torch.allclose(a, b, atol=TOLERANCE, rtol=0), (number, row, (a - b).abs().max())
            assert torch.equal(a.argmax(-1), b.argmax(-1)), (number, row)


def test_a_rows_output_does_not_depend_on_its_neighbours():
    """Rows 0 and 2 get other tokens (same lengths): row 1's outputs stay the same, bit for bit."""
    model = real_model("stories260K")
    plan, other = rounds(model.vocab_size, seed=0), rounds(model.vocab_size, seed=1)
    mixed = [[feed if feed.row == 1 else theirs for feed, theirs in zip(feeds, others)] for feeds, others in zip(plan, other)]
    first, second = batched(model.stack.sibling(), plan), batched(model.stack.sibling(), mixed)
    for got, expected in zip(first, second):
        if 1 in got:
            assert torch.equal(got[1], expected[1])
        assert all(not torch.equal(got[row], expected[row]) for row in got if row != 1)  # the neighbours did change
