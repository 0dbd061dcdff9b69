"""Ouroboros: phrase drafting with a draft model and a pool of phrases (Zhao et al., EMNLP 2024).

A plain draft model spends one forward per draft token. Here, at each draft step the proposer
looks up candidate phrases for the last token (what followed it in the context, by n-gram match,
then the phrase pool's newest) and feeds `[last token] + phrase` in ONE draft forward: the draft's
argmax along the phrase says how much of it the draft agrees with, that agreeing prefix is kept
(plus the draft's own next token after it, which the same forward computed) and the cache is
cropped for the rest. A draft forward therefore yields more than one token whenever the pool
guessed right. With `draft_phrases > 1` and a draft that supports token trees, several phrases are
checked in that forward as a tree and the longest agreeing one wins. Every token added, phrase
tokens included, is offered to the length policy with its features from that forward.

Branches for the target (up to `branches`, each at most `branch_length` tokens), verified in the
same target forward when the target supports token trees (`forward_tree`), each seeing the context
and its part of the draft but not the other branches: first the phrases the draft parted from,
hung where they part (the target, not the draft, may be right: copying from the prompt is where
a small draft agrees least), then Ouroboros' candidate suffixes after the whole draft. The
verifier follows the branch holding its own choice.

Drafting is greedy everywhere, as in the original. At temperature > 0 all draft and branch tokens
are therefore deterministic proposals (q None): the verifier's one-hot (sample-and-match) rule
keeps the output exactly the target's distribution, which the original, greedy-only, did not do.

The pool is fed by the prompt's and the output's n-grams, the draft's own continuations, the
target's argmax beyond a rejection point and the target's corrections of the branches; it is
bounded (LRU) and, with `warm_start`, kept across `generate` calls.

Extra tokens in a forward cost compute (much more on a CPU than on a GPU), so with `adaptive`
(the default) phrases and branches are cut to the length their observed agreement pays for; see
docs/proposers.md for the cost model and measurements.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import attrs
import torch

from specdec.draft import Branch, Draft, TokenTree
from specdec.errors import ConfigurationError
from specdec.integrations.base import LanguageModel, as_model, supports_tree
from specdec.policy import boolean, finite_in, non_negative_int, optional_positive_int, positive_int
from specdec.proposer import ModelCounters, ProposalRequest
from specdec.sampling import SamplingConfig, checked_max
from specdec.sequence_cache import SequenceCache
from specdec.verification import Verification

from .draft_model import cheaper_draft
from .ngram import NgramIndex
from .phrase_pool import PhrasePool

# shortest phrase harvested from a round (the prompt's n-grams are always full length)
MIN_HARVEST = 2


# a closed cost gate still probes every this many opportunities (keeps its estimate current)
PROBE_EVERY = 8
# one gate for all branches: their kinds (parted phrase / suffix, context / pool) share one payoff
# estimate, so that exploring them costs one probe, not one per kind
BRANCH_GATE = "branch"


@attrs.define
class Rate:
    """A success rate with exponential forgetting (recent rounds weigh most); prior 1 in 2."""

    hits: float = 1.0
    trials: float = 2.0

    def add(self, hits: float, trials: float, keep: float = 0.95) -> None:
        self.hits = self.hits * keep + hits
        self.trials = self.trials * keep + trials

    @property
    def value(self) -> float:
        return self.hits / self.trials if self.trials > 0 else 0.0


def worth_length(entry: float, cont: float, cost: float, cap: int) -> int:
    """Tokens worth offering when token k (1-based) is used with probability entry * cont**(k-1)
    and each costs `cost` (in units of what a used token saves): the largest k still in profit."""
    if cap <= 0 or entry <= cost:
        return 0
    if cont >= 1.0:
        return cap
    if cont <= 0.0:
        return 1
    return max(1, min(cap, 1 + int(math.log(cost / entry) / math.log(cont))))


@attrs.define
class OuroborosStats:
    """Counters since construction (for benchmarks and tests)."""

    draft_steps: int = 0  # draft forwards made while drafting
    draft_tokens: int = 0  # tokens those forwards put in drafts
    phrase_tokens: int = 0  # of which came from an agreeing pool / context phrase
    copied_tokens: int = 0  # draft tokens copied from the context without a draft forward
    branch_rounds: int = 0  # rounds that attached branches
    branch_tokens_offered: int = 0  # tokens in attached branches (target compute spent on them)
    branch_kinds: dict[str, int] = attrs.field(factory=dict)  # branch tokens emitted, per kind


@attrs.define
class OuroborosProposer(ModelCounters):
    """Draft-model proposer with phrase extension from a bounded phrase pool."""

    name = "ouroboros"
    model: LanguageModel = attrs.field(converter=as_model)
    phrase_length: int = attrs.field(default=6, validator=positive_int)  # N - 1 of the original (N = 7)
    max_phrases: int = attrs.field(default=20, validator=positive_int)  # G: phrases kept per key
    max_keys: int = attrs.field(default=4096, validator=positive_int)  # pool bound on keys
    branches: int = attrs.field(default=1, validator=non_negative_int)  # candidate suffixes per round
    branch_length: int = attrs.field(default=4, validator=positive_int)  # tokens per suffix, at most
    draft_phrases: int = attrs.field(default=1, validator=positive_int)  # phrases checked per draft forward
    pool_branches: bool = attrs.field(default=False, validator=boolean)  # also offer pool phrases as branches
    max_ngram: int = attrs.field(default=2, validator=positive_int)  # context lookup n-gram size
    adaptive: bool = attrs.field(default=True, validator=boolean)  # gate phrases and branches by their payoff
    draft_token_cost: float = attrs.field(default=0.15, validator=finite_in(0.0, 1.0))  # extra draft-forward token / a draft forward
    target_token_cost: float = attrs.field(default=0.1, validator=finite_in(0.0, 1.0))  # extra target token / an emitted token
    draft_step_cost: float = attrs.field(default=0.15, validator=finite_in(0.0, 1.0))  # a draft forward / a target step
    copy: bool = attrs.field(default=True, validator=boolean)  # propose context copies directly (gated)
    copy_length: int = attrs.field(default=10, validator=positive_int)  # tokens per copy, at most
    copy_candidates: int = attrs.field(default=1, validator=positive_int)  # context continuations per copy; the others become branches
    copy_prior: float = attrs.field(default=0.5, validator=finite_in(0.0, 1.0))  # the copy gate's rates at the start of a call
    warm_start: bool = attrs.field(default=True, validator=boolean)  # keep the pool across generate calls
    pool_file: str | None = None  # JSON pool loaded at construction (see PhrasePool.save)
    pool: PhrasePool | None = None  # share a pool between proposers (built from the bounds if None)
    head_tokens: int | None = attrs.field(default=None, validator=optional_positive_int)  # as DraftModelProposer's
    int8: bool = attrs.field(default=False, validator=boolean)  # as DraftModelProposer's
    stats: OuroborosStats = attrs.field(init=False, factory=OuroborosStats)
    _cache: SequenceCache = attrs.field(init=False, repr=False)
    _index: NgramIndex = attrs.field(init=False, repr=False)
    _fed: int = attrs.field(init=False, default=0, repr=False)  # context positions fed to the pool
    _last: Draft | None = attrs.field(init=False, default=None, repr=False)
    _anchor: int = attrs.field(init=False, default=-1, repr=False)  # context token before the draft
    # cost gates: how often a phrase token from each source is agreed by the draft, and how often
    # a branch token of each kind is emitted (entry: the first; cont: each next one)
    _agree: dict[str, Rate] = attrs.field(init=False, factory=dict, repr=False)
    _entry: dict[str, Rate] = attrs.field(init=False, factory=dict, repr=False)
    _cont: dict[str, Rate] = attrs.field(init=False, factory=dict, repr=False)
    _closed: dict[str, int] = attrs.field(init=False, factory=dict, repr=False)  # refusals per gate
    _branch_kinds: list[str] = attrs.field(init=False, factory=list, repr=False)
    _copies: list[tuple[int, int]] = attrs.field(init=False, factory=list, repr=False)  # (start, length) this round

    def __attrs_post_init__(self) -> None:
        self.model = cheaper_draft(self.model, self.head_tokens, self.int8)
        if self.pool is None:
            if self.pool_file is not None and os.path.exists(self.pool_file):
                self.pool = PhrasePool.load(
                    self.pool_file, max_phrases=self.max_phrases, max_keys=self.max_keys, phrase_length=self.phrase_length
                )
            else:
                self.pool = PhrasePool(self.max_phrases, self.max_keys, self.phrase_length)
        if self.pool.max_token() >= self.model.vocab_size:
            raise ConfigurationError(
                f"the phrase pool holds token {self.pool.max_token()}, outside the draft's vocabulary of {self.model.vocab_size}"
            )
        self._cache = SequenceCache(self.model)
        self._index = NgramIndex(self.max_ngram)

    def save_pool(self, path: str | os.PathLike | None = None) -> None:
        """Write the pool to `path` (default: `pool_file`) for a later warm start."""
        target = path if path is not None else self.pool_file
        if target is None:
            raise ConfigurationError("no path given and no pool_file set")
        self.pool.save(target)

    # ------------------------------------------------------------------ protocol
    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        self._cache.restart()
        if not self.warm_start:
            self.pool.clear()
        self._index.reset()
        self._fed = 0
        self._last = None
        # payoffs differ from prompt to prompt (an input the output copies, or not): learn afresh
        self._agree.clear()
        self._entry.clear()
        self._cont.clear()
        self._closed.clear()
        self._ingest(prompt)

    def pending(self, context: Sequence[int]) -> int:
        return self._cache.unread(context)

    def propose(self, request: ProposalRequest) -> Draft:
        context = request.context
        self._ingest(context)
        self._anchor = int(context[-1])
        alternatives = self._draft(request)
        tokens = list(request.tokens)
        branches, self._branch_kinds = self._branches(request, tokens, alternatives)
        draft = request.draft(branches)
        self._last = draft
        return draft

    def observe(self, verification: Verification) -> None:
        draft, self._last = self._last, None
        if draft is None or verification.drafted != len(draft):
            return
        self._harvest(draft, verification)
        if self.copy:
            self._learn_copies(len(draft), verification.accepted)
        if draft.branches and len(self._branch_kinds) == len(draft.branches):
            self._learn_branches(draft, verification)

    # ------------------------------------------------------------------ drafting
    def _draft(self, request: ProposalRequest) -> list[tuple[Branch, str]]:
        """Greedy drafting through `request`, each forward checking candidate phrases (see module
        docstring).

        Returns the candidate phrases the draft disagreed with, as branches hanging where they
        part from the draft (the target may prefer them).
        """
        who = f"the draft model {self.model.name!r}"
        alternatives: list[tuple[Branch, str]] = []
        pending: list[tuple[torch.Tensor, torch.Tensor | None, int]] = []  # (logits, hidden, argmax)
        first = True
        self._copies = []
        while True:
            if not pending:
                if self.copy and not self._copy(request, alternatives):
                    break
                if not request.may_forward():
                    break
                tokens = list(request.tokens)
                room = request.budget - len(tokens) - 1  # phrase tokens this forward may add
                fed, found = self._draft_phrases(request.context, tokens, room)
                pending = self._step(request.context, tokens, fed, found, first, request.wants_hidden, who, alternatives)
                first = False
            logits, state, token = pending.pop(0)
            if not request.offer(token, logits=logits, hidden=state):
                break
        self.stats.draft_tokens += request.position
        return [(b, source) for b, source in alternatives if b.at <= request.position]

    def _copy(self, request: ProposalRequest, alternatives: list[tuple[Branch, str]]) -> bool:
        """Propose what followed the current n-gram in the context, directly (no draft forward).

        Inputs that the output repeats are where a small draft agrees least with the target and a
        copy most: while copies have lately been accepted at least as often as the draft's own
        first tokens (per prompt), a copy goes into the draft as deterministic tokens, each offered
        to the policy; the draft model reads them in its next forward and drafts on after them.
        With `copy_candidates > 1` the other continuations of the n-gram (older occurrences) go to
        `alternatives`, hung where they part from the copy: the target checks them in the same pass.
        Returns False when the draft is over (the policy stopped, the budget, an end token, or drafting
        on after the copy does not pay: `_draft_after_copy_pays`).
        """
        found = self._candidates(request.context, list(request.tokens), self.copy_length, self.copy_candidates, pool=False)
        if not found:
            return True
        copy_rate = self._gate(self._entry, "copy").value
        # the draft model's token is preferred where it has the better record and the policy lets it run
        if (
            copy_rate < self._gate(self._entry, "draft").value
            and request.policy.allows_forward(request.position)
            and not self._probe("copy")
        ):
            return True
        copy = found[0][0]
        if self.adaptive:  # cut to the length its tokens' chance of being emitted pays for
            copy = copy[: self._emitted_length("copy", len(copy))]
            if not copy:
                return True
        start = request.position
        # the policy may stop it sooner; a copy it declines leaves the position to the draft model
        copied = request.offer_each(copy)
        if copied:
            self._copies.append((start, copied))
            self.stats.copied_tokens += copied
            kept = request.tokens[start:]
            for other, _ in found[1:]:
                common = _common_prefix(other, kept)
                if common < copied:
                    alternatives.append((Branch(start + common, other[common:]), "copy"))
        return not request.over and (not copied or self._draft_after_copy_pays(copied))

    def _draft_after_copy_pays(self, length: int) -> bool:
        """A draft token after a copy of `length` tokens counts only if the whole copy is accepted:
        the draft model runs on while that chance times its own record pays for a draft forward and
        the token's verify width. (A length policy sees a copy as zero-entropy tokens, so it cannot
        judge this.)"""
        if not self.adaptive:
            return True
        entry, cont = self._rates("copy")
        return entry * cont ** (length - 1) * self._rates("draft")[0] >= self.draft_step_cost + self.target_token_cost

    def _learn_copies(self, drafted: int, accepted: int) -> None:
        """Update the copy gate (first copied token accepted? how far on?) and the draft's own
        first-token acceptance, from the positions each reached."""
        copied = set()
        for start, length in self._copies:
            copied.update(range(start, start + length))
            if accepted < start:
                continue
            took = min(accepted - start, length)
            self._gate(self._entry, "copy").add(float(took > 0), 1.0)
            if took:
                self._gate(self._cont, "copy").add(took - 1, took - 1 + (took < length))
        own = next((i for i in range(drafted) if i not in copied), None)
        if own is not None and accepted >= own:
            self._gate(self._entry, "draft").add(float(accepted > own), 1.0)
        self._copies = []

    def _draft_phrases(
        self, context: Sequence[int], tokens: list[int], room: int
    ) -> tuple[list[tuple[tuple[int, ...], str]], list[tuple[tuple[int, ...], str]]]:
        """Candidate phrases at the next draft position: (those to feed, cut to the length that
        pays; all of them, which may become branches where the draft parts from them).

        A phrase token costs a little draft compute (`draft_token_cost` of a forward) and saves a
        whole forward when the draft agrees with it; with a per-source agreement rate a, the k-th
        token is agreed with probability a**k, so tokens are fed while a**k > cost.
        """
        found = self._candidates(context, tokens, max(1, min(room, self.phrase_length)), self.draft_phrases)
        if room <= 0:
            return [], found
        # the source the draft has agreed with most lately goes first (the pool, usually: it holds
        # the draft's own continuations; the context's copies are what the target agrees with)
        ranked = sorted(found, key=lambda item: -self._agree.setdefault(item[1], Rate()).value)
        if not self.adaptive:
            return ranked[: self.draft_phrases], found
        fed = []
        for phrase, source in ranked:
            if len(fed) >= self.draft_phrases:
                break
            rate = self._agree.setdefault(source, Rate()).value
            length = worth_length(rate, rate, self.draft_token_cost, len(phrase))
            if length == 0 and self._probe("draft:" + source):
                length = len(phrase)
            if length:
                fed.append((phrase[:length], source))
        return fed, found

    def _emitted_length(self, gate: str, cap: int) -> int:
        """Target-side tokens worth sending (a copy, a branch): each costs `target_token_cost` of a
        step and saves one if emitted, as the gate's entry and continuation rates estimate."""
        return worth_length(*self._rates(gate), self.target_token_cost, cap)

    def _rates(self, gate: str) -> tuple[float, float]:
        """The gate's entry rate (its first token used) and continuation rate (each next one)."""
        return self._gate(self._entry, gate).value, self._gate(self._cont, gate).value

    def _gate(self, table: dict[str, Rate], gate: str) -> Rate:
        """The gate's rate in `table`, started at its prior on first use: `copy_prior` for copies
        (an optimistic prior sends long copies until the prompt's own record says otherwise), 1 in
        2 for the others."""
        rate = table.get(gate)
        if rate is None:
            rate = table[gate] = Rate(2.0 * self.copy_prior, 2.0) if gate == "copy" else Rate()
        return rate

    def _probe(self, gate: str) -> bool:
        """A closed gate still says yes now and then, so that its estimate can recover."""
        count = self._closed[gate] = self._closed.get(gate, 0) + 1
        return count % PROBE_EVERY == 0

    def _step(
        self,
        context: Sequence[int],
        tokens: list[int],
        candidates: list[tuple[tuple[int, ...], str]],
        found: list[tuple[tuple[int, ...], str]],
        first: bool,
        hidden: bool,
        who: str,
        alternatives: list[tuple[Branch, str]],
    ) -> list[tuple[torch.Tensor, torch.Tensor | None, int]]:
        """One draft forward: the last token (or the context tail) plus the phrases to feed.

        Returns a (logits, hidden, argmax) row per new draft token: the agreeing phrase prefix and
        the draft's own token after it. Phrases the draft parts from become `alternatives`: fed
        ones where its argmax leaves them, the others if its next token already differs.
        """
        # draft tokens the draft model has not read: its own last token, and any copies after it
        lead = list(tokens) if first else list(tokens[len(self._cache.ids) - len(context):])
        chain = len(candidates) <= 1 or not supports_tree(self.model)  # one phrase: a plain forward
        candidates = candidates[:1] if chain else candidates
        phrases = [phrase for phrase, _ in candidates]
        tree = TokenTree.build((), [Branch(0, p) for p in phrases])
        if chain:
            nodes = list(tree.tokens)
            if first:
                out = self._cache.sync(context, lead + nodes, keep=len(nodes) + 1, hidden=hidden)
            else:
                out = self._cache.extend(lead + nodes, keep=len(nodes) + 1, hidden=hidden)
        elif first:
            out = self._cache.sync(context, lead, keep=len(tree) + 1, hidden=hidden, tree=(tree.tokens, tree.parents))
        else:
            out = self._cache.extend_tree(lead, tree.tokens, tree.parents, keep=len(tree) + 1, hidden=hidden)
        self.stats.draft_steps += 1
        choices = checked_max(out.logits, who).tolist()
        path: list[int] = []  # tree nodes the draft agrees with, from the root
        node = -1
        while True:
            child = tree.children(node).get(choices[node + 1])
            if child is None:
                break
            path.append(child)
            node = child
        spelled = [tree.tokens[i] for i in path]
        if chain:
            if len(path) < len(tree):  # drop the phrase tokens the draft disagrees with
                self._cache.crop(len(self._cache.ids) - (len(tree) - len(path)))
        else:
            self._cache.settle(spelled)
        base = len(tokens)
        for phrase, source in candidates:
            common = _common_prefix(phrase, spelled)
            self._agree.setdefault(source, Rate()).add(common, common + (common < len(phrase)))
            if common < len(phrase):
                alternatives.append((Branch(base + common, phrase[common:]), source))
        fed_phrases = {phrase for phrase, _ in candidates}
        for phrase, source in found:  # not fed (gated out): a branch if the draft's next token differs
            if not any(f == phrase[: len(f)] for f in fed_phrases) and phrase[0] != choices[0]:
                alternatives.append((Branch(base, phrase), source))
        self.stats.phrase_tokens += len(path)
        rows = [-1] + path
        return [(out.logits[j + 1], _row(out.hidden, j + 1), choices[j + 1]) for j in rows]

    def _branches(
        self, request: ProposalRequest, tokens: list[int], alternatives: list[tuple[Branch, str]]
    ) -> tuple[list[Branch], list[str]]:
        """Up to `branches` branches for the target, with the kind each came from.

        First the phrases the draft parted from, hung where they part, then Ouroboros' candidate
        suffixes after the whole draft; each cut to the round's tree depth and, when adaptive, to
        the length whose tokens are still likely enough to be emitted to pay for their compute.
        """
        depth = request.tree_depth
        if self.branches == 0 or depth == 0 or not tokens:  # no draft: the policy wants a plain step
            return [], []
        offers = [
            (b, "parted:" + source)
            for b, source in sorted(alternatives, key=lambda item: item[0].at)
            if source != "pool" or self.pool_branches
        ]
        if tokens[-1] not in request.eos_token_ids:
            found = self._candidates(request.context, tokens, self.branch_length, self.branches, pool=self.pool_branches)
            offers += [(Branch(len(tokens), phrase), "suffix:" + source) for phrase, source in found]
        chosen: list[Branch] = []
        kinds: list[str] = []
        seen: set[tuple[int, tuple[int, ...]]] = set()
        for branch, kind in offers:
            if len(chosen) >= self.branches:
                break
            cap = min(self.branch_length, depth - branch.at, len(branch.tokens))
            if self.adaptive:
                length = self._emitted_length(BRANCH_GATE, cap)
                if length == 0 and self._probe(BRANCH_GATE):
                    length = cap
            else:
                length = cap
            cut = branch.tokens[:length]
            if cut and (branch.at, cut) not in seen:
                seen.add((branch.at, cut))
                chosen.append(Branch(branch.at, cut))
                kinds.append(kind)
        self.stats.branch_rounds += bool(chosen)
        self.stats.branch_tokens_offered += sum(len(b.tokens) for b in chosen)
        return chosen, kinds

    def _learn_branches(self, draft: Draft, verification: Verification) -> None:
        """Update the branch gates: was each branch's first token emitted, and how far did it go."""
        on_path = set(verification.tree_path)
        for branch, nodes, kind in zip(draft.branches, draft.tree.branch_nodes, self._branch_kinds):
            emitted = sum(1 for node in nodes if node in on_path)
            self._gate(self._entry, BRANCH_GATE).add(float(emitted > 0), 1.0)
            if emitted:
                self._gate(self._cont, BRANCH_GATE).add(emitted - 1, emitted - 1 + (emitted < len(branch.tokens)))
            self.stats.branch_kinds[kind] = self.stats.branch_kinds.get(kind, 0) + emitted

    def _candidates(
        self, context: Sequence[int], drafted: list[int], length: int, count: int, *, pool: bool = True
    ) -> list[tuple[tuple[int, ...], str]]:
        """Distinct continuations of context + drafted with their source: up to `count` from the
        context (n-gram match, newest first), then up to `count` more from the pool (newest)."""
        tail = (list(context[-self.max_ngram:]) + drafted)[-self.max_ngram:]
        found: list[tuple[tuple[int, ...], str]] = []
        seen: set[tuple[int, ...]] = set()
        for cont in self._index.lookup(tail, length, drafted=drafted, limit=count):
            found.append((tuple(cont), "context"))
            seen.add(tuple(cont))
        if pool:
            taken = 0
            for phrase in self.pool.get(tail[-1], limit=count + len(found)):
                phrase = phrase[:length]
                if phrase not in seen:
                    found.append((phrase, "pool"))
                    seen.add(phrase)
                    taken += 1
                    if taken >= count:
                        break
        return found

    # ------------------------------------------------------------------ the pool
    def _ingest(self, context: Sequence[int]) -> None:
        """Index new context tokens and feed the pool the phrases they complete (full length)."""
        start = self._index.update(context)
        if start == 0:
            self._fed = 0
        stop = len(context) - self.phrase_length
        if stop > self._fed:
            self.pool.add_sequence(self._index.tokens, self._fed, stop, min_length=self.phrase_length)
            self._fed = stop

    def _harvest(self, draft: Draft, verification: Verification) -> None:
        """Phrases from this round: the draft's continuations and the target's predictions."""
        pool = self.pool
        path = [self._anchor] + list(draft.tokens)
        # (a) the draft's own continuations (what it will likely say again after these tokens)
        pool.add_sequence(path, 0, len(path) - MIN_HARVEST, min_length=MIN_HARVEST)
        # (b) the target's argmax beyond the rejection point: after draft token j-1 the target
        # predicted argmax[j]; the phrase goes on while the draft fed the token the target predicted
        argmax = verification.target_argmax
        d = draft.tokens
        if verification.accepted < len(d) and len(argmax) == len(d) + 1:
            for j in range(verification.accepted + 1, len(d) + 1):
                phrase = [argmax[j]]
                k = j
                while k < len(d) and d[k] == argmax[k] and len(phrase) < self.phrase_length:
                    phrase.append(argmax[k + 1])
                    k += 1
                if len(phrase) >= MIN_HARVEST:
                    pool.add(d[j - 1], phrase)
        # (c) the target's corrections of the branches whose attachment point was reached: the
        # target's argmax along each replaces the branch in the pool (update in place)
        if draft.branches and len(verification.tree_argmax) == len(draft.tree) - len(d):
            every = tuple(argmax) + tuple(verification.tree_argmax)  # row j + 1 follows node j
            for branch, nodes in zip(draft.branches, draft.tree.branch_nodes):
                if verification.accepted < branch.at:
                    continue
                corrected = [every[branch.at]]
                for token, node in zip(branch.tokens, nodes):
                    if token != corrected[-1] or len(corrected) >= self.phrase_length:
                        break
                    corrected.append(every[node + 1])
                key = d[branch.at - 1] if branch.at else self._anchor
                if len(corrected) >= MIN_HARVEST:
                    pool.replace(key, branch.tokens, corrected)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    common = 0
    for x, y in zip(a, b):
        if x != y:
            break
        common += 1
    return common


def _row(hidden: torch.Tensor | None, j: int) -> torch.Tensor | None:
    return None if hidden is None else hidden[j]
