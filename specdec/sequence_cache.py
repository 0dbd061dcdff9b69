"""Keep a model's KV cache in step with a token sequence, reusing the longest common prefix.

Target and draft both use this: before a forward, the cache is cropped to the part that still
matches the committed context (rejected draft tokens fall away) and only the missing tokens are
fed. The prefix is compared once per generation; afterwards only the few tokens past the last
verified length are compared, so the per-round work does not grow with the prompt.

A forward may also feed a token tree (a draft with branches, `extend_tree`). The cache then holds
every branch until the next `sync`, which follows the new context down the tree, keeps exactly
that path (moved next to the prefix by the model's `compact`, so nothing is re-encoded) and drops
the rest; `settle` does the same for a path the caller names.

Several sequences in the rows of one `BatchModel` keep a cache each over a `ModelRow`; a `Feed`
names one forward a cache asks for, and `feed_rows` feeds several rows' in one forward.
"""

from __future__ import annotations

import time
from typing import Sequence

import attrs

from specdec.integrations.base import BatchModel, LanguageModel, ModelOutput, RowInput, supports_tree
from specdec.integrations.rows import ModelRow


class SequenceCache:
    def __init__(self, model: LanguageModel) -> None:
        self.model = model
        self.ids: list[int] = []
        self._verified = 0  # self.ids[:_verified] is known to equal the context's prefix
        # a token tree fed after `ids` and not yet resolved: (tokens, parents), see `extend_tree`
        self._tree: tuple[list[int], list[int]] | None = None
        # the model's forward count after our last forward: if it moved, someone else used the
        # model (two caches, or two decoders, sharing one model) and its cache is not ours
        self._seen_forwards: int | None = None

    def restart(self) -> None:
        """A new generation: the cached prefix will be compared against the new context once."""
        self._verified = 0

    def reset(self) -> None:
        self.ids.clear()
        self._verified = 0
        self._tree = None
        self.model.reset()
        self._seen_forwards = self.model.forwards

    def sync(
        self,
        context: Sequence[int],
        extra: Sequence[int] = (),
        *,
        keep: int = 1,
        hidden: bool = False,
        tree: tuple[Sequence[int], Sequence[int]] | None = None,
        features: Sequence[int] = (),
    ) -> ModelOutput:
        """Feed whatever of `context + extra` the cache lacks (at least the last context token).

        Returns the outputs for the last `keep` positions of `context + extra`, or, with `tree`
        (tokens, parents) appended after them as in `extend_tree`, of everything fed; `features`
        asks a `FeatureModel` for those layers' hidden states at every token fed.
        """
        fed = self._unread_tail(context) + list(extra)
        if tree is None:
            return self.extend(fed, keep=keep, hidden=hidden, features=features)
        return self.extend_tree(fed, tree[0], tree[1], keep=keep, hidden=hidden, features=features)

    def _unread_tail(self, context: Sequence[int]) -> list[int]:
        """Crop the cache to what still matches `context` (settling a pending tree); the tokens
        of `context` to feed next (at least its last)."""
        if not self._owns_model():
            self.reset()
        n = self._common_prefix(context)
        if self._tree is not None:  # resolve last round's tree: keep the path the context took
            if n == len(self.ids):
                n = self._settle(context[n:])
            else:
                self._settle(())
        n = min(n, len(context) - 1)
        self._verified = n
        self._crop(n)
        return list(context[n:])

    def unread(self, context: Sequence[int]) -> int:
        """Tokens of `context` the next `sync` would feed (at least its last token)."""
        n = self._common_prefix(context) if self._owns_model() else 0
        return len(context) - min(n, len(context) - 1)

    def _owns_model(self) -> bool:
        model = self.model
        return self._seen_forwards == model.forwards and model.cached_length == len(self.ids) + self._pending_tree()

    def _pending_tree(self) -> int:
        return len(self._tree[0]) if self._tree is not None else 0

    def _common_prefix(self, context: Sequence[int]) -> int:
        """Length of the cached prefix that equals the context's (compared past `_verified` only)."""
        n = min(self._verified, len(self.ids), len(context))
        limit = min(len(self.ids), len(context))
        while n < limit and self.ids[n] == context[n]:
            n += 1
        return n

    def extend(self, tokens: Sequence[int], *, keep: int = 1, hidden: bool = False, features: Sequence[int] = ()) -> ModelOutput:
        """Feed `tokens` after what the cache holds (call `sync` first in a round)."""
        self._settle_pending()
        out = self.model.forward(tokens, keep=keep, hidden=hidden, **_asked(features))
        self._fed(tokens, None)
        return out

    def extend_tree(
        self, prefix: Sequence[int], tokens: Sequence[int], parents: Sequence[int], *, keep: int = 1, hidden: bool = False,
        features: Sequence[int] = (),
    ) -> ModelOutput:
        """Feed the chain `prefix`, then a token tree hanging after it, in one forward.

        `parents[i]` is the index in `tokens` of node i's parent, or -1 for a node that follows the
        last token of `prefix` (or of the cache, when `prefix` is empty). Returns the outputs for
        the last `keep` positions fed (prefix then nodes, in order). Which path of the tree stays
        cached is settled at the next `sync` (the path the context continues with) or `settle`.
        """
        self._settle_pending()
        out = self.model.forward_tree(list(prefix) + list(tokens), _links(len(prefix), parents), keep=keep, hidden=hidden, **_asked(features))
        self._fed(prefix, (tokens, parents))
        return out

    def _settle_pending(self) -> None:
        """Drop a token tree fed last time that no `sync` resolved (nothing of it is kept)."""
        if self._tree is not None:
            self._settle(())

    def _fed(self, prefix: Sequence[int], tree: tuple[Sequence[int], Sequence[int]] | None) -> None:
        """Record a forward that fed `prefix` (and `tree` after it)."""
        self._seen_forwards = self.model.forwards
        self.ids.extend(prefix)
        self._tree = None if tree is None else (list(tree[0]), list(tree[1]))

    def settle(self, path: Sequence[int]) -> int:
        """Keep the tree path spelling `path` (as far as it goes) after `ids`; drop the rest.

        Returns how many tokens of `path` are now cached.
        """
        before = len(self.ids)
        if self._tree is not None:
            self._settle(path)
        return len(self.ids) - before

    def _settle(self, upcoming: Sequence[int]) -> int:
        """Resolve the pending tree: follow `upcoming` down it, keep that path, forget the rest.

        The model moves the kept entries next to the prefix (`compact`) when it can; a model that
        cannot keeps only a leading run of draft-order nodes and re-feeds the rest later.
        """
        tokens, parents = self._tree
        self._tree = None
        base = len(self.ids)
        children: dict[tuple[int, int], int] = {(p, t): i for i, (t, p) in enumerate(zip(tokens, parents))}
        path: list[int] = []
        node = -1
        for token in upcoming:
            node = children.get((node, int(token)), -2)
            if node == -2:
                break
            path.append(node)
        if path and path == list(range(len(path))):
            self.model.crop(base + len(path))  # a leading run of nodes: cropping is enough
        elif path and supports_tree(self.model):
            self.model.compact(base, [base + i for i in path])
        else:
            self.model.crop(base)
            path = []
        self.ids.extend(tokens[i] for i in path)
        return len(self.ids)

    def crop(self, length: int) -> None:
        """Forget cached tokens beyond `length` (a proposer dropping tokens it fed speculatively)."""
        self._crop(length)

    def _crop(self, length: int) -> None:
        if self._tree is not None:
            self._settle(())
        if length < len(self.ids):
            self.model.crop(length)
            del self.ids[length:]


@attrs.frozen
class Feed:
    """One forward a cache asks for: `SequenceCache.sync(context, extra, ...)`, or with `context`
    None `extend(extra)` (`extend_tree` with `tree`). `run` feeds it alone; `feed_rows` feeds
    several caches over rows of one `BatchModel` in one forward. A round's steps are such feeds,
    so that the same code decodes one sequence or a batch (`specdec.stepping`)."""

    cache: SequenceCache
    context: Sequence[int] | None
    extra: Sequence[int] = ()
    keep: int = 1
    hidden: bool = False
    tree: tuple[Sequence[int], Sequence[int]] | None = None

    @property
    def batch(self) -> BatchModel | None:
        """The batched model whose row the cache holds (None: a model of its own)."""
        model = self.cache.model
        return model.batch if isinstance(model, ModelRow) else None

    def run(self, features: Sequence[int] = ()) -> ModelOutput:
        """This forward on its own."""
        cache = self.cache
        if self.context is not None:
            return cache.sync(self.context, self.extra, keep=self.keep, hidden=self.hidden, tree=self.tree, features=features)
        if self.tree is None:
            return cache.extend(self.extra, keep=self.keep, hidden=self.hidden, features=features)
        return cache.extend_tree(self.extra, self.tree[0], self.tree[1], keep=self.keep, hidden=self.hidden, features=features)


def feed_rows(batch: BatchModel | None, feeds: Sequence[Feed], features: Sequence[int] = ()) -> tuple[list[ModelOutput], list[float]]:
    """The `feeds` of caches over rows of `batch` in one forward: each row's cache decides what its
    row feeds, exactly as alone (`Feed.run`). Returns the outputs, in order, and each row's share
    of the call's seconds (an even share: the charges add up to the wall time, and a row's
    drafting is priced at what it costs the machine), which its row's counters also record.
    With `batch` None the feeds are of models of their own: each runs alone, charged its seconds."""
    if batch is None:
        outs, charges = [], []
        for feed in feeds:
            started = time.perf_counter()
            outs.append(feed.run(features))
            charges.append(time.perf_counter() - started)
        return outs, charges
    started = time.perf_counter()
    inputs: list[RowInput] = []
    for feed in feeds:
        cache, row = feed.cache, feed.cache.model
        if not isinstance(row, ModelRow) or row.batch is not batch:
            raise ValueError(f"a feed of {row.name!r} is not a row of {batch.name!r}")
        if feed.context is not None:
            fed = cache._unread_tail(feed.context) + list(feed.extra)
        else:
            cache._settle_pending()
            fed = list(feed.extra)
        if feed.tree is None:
            inputs.append(row.input(fed, None, feed.keep, feed.hidden))
        else:
            inputs.append(row.input(fed + list(feed.tree[0]), _links(len(fed), feed.tree[1]), feed.keep, feed.hidden))
    outs = batch.forward_rows(inputs, features=features)
    charges = [(time.perf_counter() - started) / len(inputs)] * len(inputs)
    for feed, request, charge in zip(feeds, inputs, charges):
        feed.cache.model.advance(len(request.tokens), charge)  # before `_fed`, which notes the row's forwards
        tree_size = 0 if feed.tree is None else len(feed.tree[0])
        feed.cache._fed(request.tokens[: len(request.tokens) - tree_size], feed.tree)
    return outs, charges


def _links(chain: int, parents: Sequence[int]) -> list[int]:
    """A forward's parents for a chain of `chain` tokens followed by a tree whose `parents` index
    the tree's own nodes (-1: the chain's last token)."""
    return [i - 1 for i in range(chain)] + [chain - 1 if p < 0 else chain + p for p in parents]


def _asked(features: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """The `features=` argument, passed only when layers are asked for (a model that is not a
    `FeatureModel` takes no such argument)."""
    return {"features": tuple(features)} if features else {}
