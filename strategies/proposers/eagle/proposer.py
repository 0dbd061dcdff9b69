"""The `eagle` proposer: a head drafts from the target's own hidden states (EAGLE, EAGLE-3).

The target's verify forward already computes the states the head reads (`target_layers`), so the
target runs no extra forward: the decoder hands the states of every position a round commits to
`observe`, and they wait there until the next `propose`. Head slot t pairs the token at position
t + 1 with the target's state at position t and predicts the token at t + 2; after a round the
target's states cover the context but its last token, so one head forward over the slots still
missing (usually the accepted tokens and the correction) yields the first draft token, and each
further draft token takes one single-slot forward on the head's own previous output. Slots
computed from the head's own outputs are cropped at the next round and computed again from the
target's states.

Every token goes through `ProposalRequest.draw` as a draft model's does: the argmax when greedy,
else a sample of the warped head distribution with its q for the verifier; the policy sees the
head's distribution like any draft's.
"""

from __future__ import annotations

import contextvars
import time
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import attrs
import torch

from specdec.draft import Draft
from specdec.errors import ConfigurationError
from specdec.integrations.base import FeatureModel, LanguageModel
from specdec.progress import reporting
from specdec.proposer import ProposalRequest
from specdec.sampling import SamplingConfig
from specdec.verification import TargetFeatures, Verification
from specdec.strategies.policies.pacer.drafts import draft_fingerprint

from .checkpoint import LoadedHead, load_head
from .network import EagleHead, HeadCache

DEFAULT_DIR = "default"
LOAD_REPORT_AFTER = 1.0  # seconds of loading after which stderr says what is going on
# set by `from_head` for the duration of one constructor call
_PRELOADED: contextvars.ContextVar[EagleHead | None] = contextvars.ContextVar("eagle_preloaded", default=None)


def default_path() -> Path:
    """The head shipped for the default target, installed as package data (when there is one)."""
    return Path(str(resources.files(__package__).joinpath(DEFAULT_DIR)))


def target_fingerprint(target: LanguageModel) -> str:
    """What identifies the target a head was trained for (the same fingerprint PACER keeps of its draft)."""
    return draft_fingerprint(target)


@attrs.define
class EagleProposer:
    """EAGLE: a one-layer head drafts from the target's own hidden states, no extra target forward.

    `path` is a head directory: one written by `specdec train-eagle`, or a published EAGLE /
    EAGLE-3 checkpoint (config.json + model.safetensors; pickles are refused with the conversion).
    Without it, the head shipped for the default target is used, and refused for another target.
    `target` is the target model, passed as a resource by the decoder (its embedding and LM head
    are lent to the head; its verify forwards supply the hidden states).
    """

    name = "eagle"
    target: LanguageModel = attrs.field(repr=False, eq=False)
    path: str | None = None
    head: EagleHead = attrs.field(init=False, repr=False, eq=False)
    forwards: int = attrs.field(init=False, default=0)
    forward_seconds: float = attrs.field(init=False, default=0.0)
    _cache: HeadCache = attrs.field(init=False, factory=HeadCache, repr=False, eq=False)
    _slots: int = attrs.field(init=False, default=0)  # head slots computed from the target's own states
    _known: int = attrs.field(init=False, default=0)  # positions whose target states arrived
    _waiting: list[tuple[torch.Tensor, ...]] = attrs.field(init=False, factory=list, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.target, FeatureModel):
            raise ConfigurationError(f"the target {self.target.name!r} does not return its hidden states, which an EAGLE head reads")
        preloaded = _PRELOADED.get()
        loaded = LoadedHead(preloaded, "(in memory)") if preloaded is not None else self._load()
        head, c, width = loaded.head, loaded.head.config, self.target.hidden_size
        if c.vocab_size != self.target.vocab_size or c.target_hidden_size != width or (not c.own_embedding and c.hidden_size != width):
            raise ConfigurationError(self._mismatch(loaded, f"vocabulary {self.target.vocab_size} and hidden size {width}"))
        if loaded.target_fingerprint and loaded.target_fingerprint != target_fingerprint(self.target):
            raise ConfigurationError(self._mismatch(loaded, "a different fingerprint"))
        head.config = c.bound(self.target.num_layers)
        head.attach(self.target.input_embedding(), None if c.own_head else self.target.output_embedding())
        self.head = head

    def _load(self) -> LoadedHead:
        folder = Path(self.path).expanduser() if self.path is not None else default_path()
        if self.path is None and not (folder / "config.json").is_file():
            raise ConfigurationError(
                "no EAGLE head ships for this target; train one with `specdec train-eagle --out DIR` and pass "
                "--proposer-param path=DIR (or a published EAGLE / EAGLE-3 head's directory)"
            )
        with reporting(f"loading the EAGLE head from {folder}", done="loaded the EAGLE head", after=LOAD_REPORT_AFTER):
            return load_head(folder)

    def _mismatch(self, loaded: LoadedHead, what: str) -> str:
        config = loaded.head.config
        source = "the shipped EAGLE head" if self.path is None else f"the EAGLE head at {loaded.path!r}"
        trained = f" was trained for the target {loaded.target_name!r}" if loaded.target_name else ""
        return (
            f"{source}{trained} (vocabulary {config.vocab_size}, hidden size {config.target_hidden_size}) but the target "
            f"{self.target.name!r} has {what}; train a head for this target with `specdec train-eagle --target ...` and pass "
            "--proposer-param path=DIR"
        )

    @classmethod
    def from_head(cls, target: LanguageModel, head: EagleHead, **params: Any) -> "EagleProposer":
        """A proposer around an in-memory head (tests, a freshly trained one); no file is read."""
        token = _PRELOADED.set(head)
        try:
            return cls(target, **params)
        finally:
            _PRELOADED.reset(token)

    # ------------------------------------------------------------------ the protocol's facts
    @property
    def models(self) -> tuple[LanguageModel, ...]:
        return ()  # the head is not a LanguageModel; the target is the decoder's own

    @property
    def target_layers(self) -> tuple[int, ...]:
        return self.head.config.layers

    @property
    def vocab_size(self) -> int | None:
        return self.head.config.vocab_size

    @property
    def max_length(self) -> int | None:
        return None

    def pending(self, context: Sequence[int]) -> int:
        """Head slots the next round's first forward computes (from the target's states)."""
        return max(len(context) - 1 - self._slots, 0)

    # ------------------------------------------------------------------ drafting
    def start(self, prompt: Sequence[int], sampling: SamplingConfig) -> None:
        """A new call: the decoder's target reads the prompt afresh, so the head starts empty too."""
        self._cache.reset()
        self._slots = self._known = 0
        self._waiting.clear()

    def observe(self, verification: Verification) -> None:
        features = verification.target_features
        if features is None or not len(features):
            return
        if features.start != self._known:
            raise RuntimeError(
                f"the target's hidden states arrived for positions from {features.start}, but the EAGLE head has them up to "
                f"{self._known}: the decoder must hand over every position it commits"
            )
        self._waiting.append(features.layers)
        self._known += len(features)

    def propose(self, request: ProposalRequest) -> Draft:
        context = request.context
        # the first round of a call has no target states yet (and a one-token prompt no slot to fill)
        if self._known < len(context) - 1 or self._slots >= len(context) - 1 or not request.may_forward():
            return request.draft()
        with torch.inference_mode():
            state = self._catch_up(context)
            while request.draw(self._logits(state), state[0] if request.wants_hidden else None, who="the EAGLE head"):
                if not request.may_forward():
                    break
                state = self._step(torch.tensor([[request.tokens[-1]]]), state.unsqueeze(0))
        return request.draft()

    def _catch_up(self, context: Sequence[int]) -> torch.Tensor:
        """Compute the slots the target's new states allow; the last slot's output state [1, hidden]."""
        self._cache.crop(self._slots)  # drop slots computed from the head's own outputs
        # the waiting states are those of positions _slots.._known-1, and _known is len(context) - 1
        layers = [torch.cat(parts) for parts in zip(*self._waiting)] if len(self._waiting) > 1 else list(self._waiting[0])
        self._waiting.clear()
        first, last = self._slots, len(context) - 1  # slots first..last-1 pair tokens first+1..last with those states
        tokens = torch.tensor([list(context[first + 1 : last + 1])])
        out = self._step(tokens, self.head.fuse(layers).unsqueeze(0))
        self._slots = last
        return out[-1:]

    def _step(self, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """One head forward over [1, n] slots; the output states [n, hidden]."""
        began = time.perf_counter()
        out = self.head(tokens, features, self._cache)[0]
        self.forward_seconds += time.perf_counter() - began
        self.forwards += 1
        return out

    def _logits(self, state: torch.Tensor) -> torch.Tensor:
        began = time.perf_counter()
        logits = self.head.logits(state)[0]
        self.forward_seconds += time.perf_counter() - began
        return logits
