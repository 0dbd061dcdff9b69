"""What a proposer hands to the verifier."""

from __future__ import annotations

from typing import Sequence

import attrs
import torch

from specdec.features import TokenFeatures


@attrs.frozen
class Branch:
    """A deterministic alternative continuation, proposed after the draft's first `at` tokens.

    `at == len(draft)` extends the whole draft (Ouroboros' candidate suffixes); a smaller `at`
    offers another path where the draft might be wrong. Branch tokens are verified one-hot.
    """

    at: int
    tokens: tuple[int, ...] = attrs.field(converter=lambda ts: tuple(int(t) for t in ts))


@attrs.frozen
class TokenTree:
    """The draft and its branches merged into one trie of tokens.

    Node i holds `tokens[i]`; `parents[i]` is its parent node, or -1 for the root (the position
    after the last context token). Nodes 0..len(draft)-1 are the draft's own tokens, in order, so a
    draft without branches is the chain 0 <- 1 <- ...; branch nodes follow. The children of a node
    hold distinct tokens, which is what lets the verifier follow "the child that equals its own
    choice". `branch_nodes[b]` lists the nodes of branch b.
    """

    tokens: tuple[int, ...]
    parents: tuple[int, ...]
    branch_nodes: tuple[tuple[int, ...], ...] = ()
    _children: tuple[dict[int, int], ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        children: list[dict[int, int]] = [{} for _ in range(len(self.tokens) + 1)]  # last = root
        for node, (token, parent) in enumerate(zip(self.tokens, self.parents)):
            children[parent][token] = node
        object.__setattr__(self, "_children", tuple(children))

    def __len__(self) -> int:
        return len(self.tokens)

    def children(self, node: int) -> dict[int, int]:
        """token -> child node (node -1 is the root)."""
        return self._children[node]

    def depth(self) -> int:
        """Tokens on the longest root-to-leaf path."""
        depths: list[int] = []
        for parent in self.parents:
            depths.append(1 if parent < 0 else depths[parent] + 1)
        return max(depths, default=0)

    @classmethod
    def build(cls, draft_tokens: Sequence[int], branches: Sequence[Branch]) -> "TokenTree":
        tokens = [int(t) for t in draft_tokens]
        parents = list(range(-1, len(tokens) - 1))
        children: dict[tuple[int, int], int] = {(parents[i], t): i for i, t in enumerate(tokens)}
        nodes_of: list[tuple[int, ...]] = []
        for branch in branches:
            node = branch.at - 1  # the draft node it hangs from (-1: the root)
            path: list[int] = []
            for token in branch.tokens:
                child = children.get((node, token))
                if child is None:
                    child = len(tokens)
                    tokens.append(token)
                    parents.append(node)
                    children[(node, token)] = child
                path.append(child)
                node = child
            nodes_of.append(tuple(path))
        return cls(tuple(tokens), tuple(parents), tuple(nodes_of))


@attrs.frozen
class Draft:
    """Proposed tokens for one round.

    `q[i]` is the exact distribution token i was sampled from (after the same warping as the
    target), or None when the token was proposed deterministically (argmax, lookup, phrase): the
    verifier then uses the one-hot rule. In greedy mode `q` may be all None.

    `branches` are optional deterministic alternatives (see `Branch`), verified in the same target
    forward when the target supports token trees (`ProposalRequest.tree_depth > 0`); `tree` is the
    draft and its branches merged into one trie. `forwards` counts the draft-model forwards the
    round made (`ProposalRequest.may_forward`), which a cost-aware policy prices. `start` is the
    absolute position of its first token (the committed context's length), which keys the
    verifier's random draws (`specdec.samplers.Site`); the decoder sets it.
    """

    tokens: tuple[int, ...] = ()
    q: tuple[torch.Tensor | None, ...] = attrs.field(default=(), eq=False)
    features: tuple[TokenFeatures, ...] = attrs.field(default=(), eq=False)
    branches: tuple[Branch, ...] = attrs.field(default=(), converter=tuple)
    forwards: int = attrs.field(default=0, kw_only=True)  # draft-model forwards made for this round
    start: int = attrs.field(default=0, kw_only=True)  # absolute position of the first token
    _tree: TokenTree | None = attrs.field(init=False, default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.q and len(self.q) != len(self.tokens):
            raise ValueError(f"draft has {len(self.tokens)} tokens but {len(self.q)} q rows")
        for branch in self.branches:
            if not 0 <= branch.at <= len(self.tokens) or not branch.tokens:
                raise ValueError(f"branch {branch} must be non-empty and hang from a draft position 0..{len(self.tokens)}")

    @property
    def tree(self) -> TokenTree:
        """The draft and its branches as one trie (built once)."""
        if self._tree is None:
            object.__setattr__(self, "_tree", TokenTree.build(self.tokens, self.branches))
        return self._tree

    def __len__(self) -> int:
        return len(self.tokens)

    def q_at(self, i: int) -> torch.Tensor | None:
        return self.q[i] if self.q else None


EMPTY_DRAFT = Draft()
