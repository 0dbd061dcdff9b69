"""PACER: a trained blockwise pre-verifier decides when to stop drafting (arXiv 2602.01274).

See docs/pacer.md. The network (strategies/policies/pacer/network.py) scores each drafted token from the draft's
own hidden state and cheap scalars; every `block_size` tokens the block's score (the product of its
tokens' predicted acceptance, i.e. P(block accepted | earlier blocks accepted)) is compared with
`threshold`. The decision is made in `decide`, after a token is kept, so a stop only shortens the
draft: the method is lossless whatever the network says.
"""

from __future__ import annotations

import contextvars
import math
import time
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import torch

from specdec.errors import ConfigurationError
from specdec.features import DraftFeatures, TokenFeatures
from specdec.integrations.base import LanguageModel
from .drafts import draft_fingerprint, draft_hidden_size
from .network import PreVerifier, TokenScorer, scalar_features
from specdec.policy import Decision, PolicyBase, RoundState, finite_in, one_of, positive_int
from specdec.progress import reporting
from specdec.verification import Verification

from specdec.strategies.policies.auto import CostAwarePolicy

RULES = ("threshold", "cost")

DEFAULT_DIR = "default"
LOAD_REPORT_AFTER = 1.0  # seconds of loading the network after which stderr says what is going on
# set by `from_verifier` for the duration of one constructor call
_PRELOADED: contextvars.ContextVar[PreVerifier | None] = contextvars.ContextVar("pacer_preloaded", default=None)


def default_path() -> Path:
    """The pre-verifier shipped for the default draft (smollm2-draft), installed as package data."""
    return Path(str(resources.files(__package__).joinpath(DEFAULT_DIR)))


def _optional(validator):
    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check


@attrs.define
class PacerPolicy(PolicyBase):
    """PACER: a trained pre-verifier stops the draft at the first block predicted to fail.

    `path` is a directory written by `specdec train-pacer` (default: the one shipped for the default
    draft). `threshold`, `block_size` and `max_draft` default to the values tuned at training time.
    `model` is the draft model, passed by the command line and benchmark as a resource (like a
    proposer's): it is checked against the draft the pre-verifier was trained for. Without it, the
    hidden size is checked at the first drafted token. Tokens proposed without a distribution (a
    lookup proposer) cannot be scored and never stop the draft.

    `rule` says what the scores decide. "threshold" (the paper's rule): stop at the first block
    whose score is below `threshold`. "cost": each token's score is the acceptance estimate of
    the cost-aware rule of `auto` (strategies/policies/auto/), calibrated online per decile
    of the score: drafting goes on while the next token's expected saving exceeds its measured
    draft and verify cost, and a round whose first token is not expected to pay is a plain target
    step. `block_size` and `threshold` do not apply to it.
    """

    name = "pacer"
    path: str | None = None
    threshold: float | None = attrs.field(default=None, validator=_optional(finite_in(0.0, 1.0)))
    block_size: int | None = attrs.field(default=None, validator=_optional(positive_int))
    max_draft: int | None = attrs.field(default=None, validator=_optional(positive_int))
    rule: str = attrs.field(default="threshold", validator=one_of(*RULES))
    model: LanguageModel | None = attrs.field(default=None, repr=False, eq=False)
    network: PreVerifier = attrs.field(init=False, repr=False, eq=False)
    overhead_seconds: float = attrs.field(init=False, default=0.0)  # time spent in decide(), all calls
    evaluations: int = attrs.field(init=False, default=0)  # block scores computed
    _hidden: list[torch.Tensor] = attrs.field(init=False, factory=list, repr=False)
    _scalars: list[list[float]] = attrs.field(init=False, factory=list, repr=False)
    _tokens: list[int] = attrs.field(init=False, factory=list, repr=False)
    _positions: list[int] = attrs.field(init=False, factory=list, repr=False)
    _log_hazards: list[float] = attrs.field(init=False, factory=list, repr=False)
    _scorer: TokenScorer | None = attrs.field(init=False, default=None, repr=False)
    _checked: bool = attrs.field(init=False, default=False, repr=False)
    _no_hidden: torch.Tensor = attrs.field(init=False, factory=lambda: torch.zeros(0), repr=False)
    _costs: CostAwarePolicy | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self._load()
        if self.rule == "cost":
            self._costs = CostAwarePolicy(max_draft=self.cap)

    def _load(self) -> None:
        preloaded = _PRELOADED.get()
        if preloaded is not None:
            self._use(preloaded, shipped=False)
            return
        folder = Path(self.path).expanduser() if self.path is not None else default_path()
        if self.path is None and not (folder / "config.json").is_file():
            raise ConfigurationError(
                "the default PACER pre-verifier is not installed; train one with `specdec train-pacer` and pass "
                "--policy-param path=DIR"
            )
        # quick (a few ms); reported on stderr only if a slow disk makes it take a while
        with reporting(f"loading the PACER pre-verifier from {folder}", done="loaded the PACER pre-verifier", after=LOAD_REPORT_AFTER):
            network = PreVerifier.from_pretrained(folder)
        self._use(network, shipped=self.path is None)

    @classmethod
    def from_verifier(cls, verifier: PreVerifier, **params: Any) -> "PacerPolicy":
        """A policy around an in-memory network (tests, a freshly trained one); no file is read."""
        token = _PRELOADED.set(verifier)
        try:
            return cls(**params)
        finally:
            _PRELOADED.reset(token)

    @classmethod
    def from_pretrained(cls, path: str | Path, **params: Any) -> "PacerPolicy":
        return cls(path=str(path), **params)

    def save_pretrained(self, path: str | Path) -> Path:
        """Save the network with this policy's decision settings as the new defaults."""
        config = attrs.evolve(self.network.config, threshold=self.tau, block_size=self.block, max_draft=self.cap)
        return self.network.save_pretrained(path, config=config)

    def _use(self, network: PreVerifier, *, shipped: bool) -> None:
        self.network = network.eval()
        self._scorer = network.token_scorer()
        self._no_hidden = torch.zeros(network.config.hidden_size)
        for p in self.network.parameters():
            p.requires_grad_(False)
        if self.model is not None:
            self._check_model(self.model, shipped)

    def _check_model(self, model: LanguageModel, shipped: bool) -> None:
        config = self.network.config
        size = draft_hidden_size(model)
        if size is not None and size != config.hidden_size:
            raise ConfigurationError(self._mismatch(model, f"hidden size {size}, expected {config.hidden_size}", shipped))
        if config.draft_fingerprint and draft_fingerprint(model) != config.draft_fingerprint:
            raise ConfigurationError(self._mismatch(model, "a different fingerprint", shipped))
        self._checked = True

    def _mismatch(self, model: Any, what: str, shipped: bool) -> str:
        config = self.network.config
        source = "the shipped pre-verifier" if shipped else f"the pre-verifier at {self.path!r}"
        return (
            f"{source} was trained for the draft {config.draft_name or '?'!r} but the draft "
            f"{getattr(model, 'name', '?')!r} has {what}; train one for this draft with "
            "`specdec train-pacer --draft ...` and pass --policy-param path=DIR"
        )

    @property
    def wants_hidden(self) -> bool:  # type: ignore[override]
        """Ask the proposer for hidden states only when the network reads them (hidden_rank > 0)."""
        return self.network.config.hidden_rank > 0

    # ------------------------------------------------------------------ resolved settings
    @property
    def tau(self) -> float:
        return self.network.config.threshold if self.threshold is None else self.threshold

    @property
    def block(self) -> int:
        return self.network.config.block_size if self.block_size is None else self.block_size

    @property
    def cap(self) -> int:
        return self.network.config.max_draft if self.max_draft is None else self.max_draft

    # ------------------------------------------------------------------ the protocol
    def start(self) -> None:
        self._reset_round()
        if self._costs is not None:
            self._costs.start()

    def begin_round(self, state: RoundState) -> int:
        self._reset_round()
        return self.cap if self._costs is None else self._costs.begin_round(state)

    def allows_forward(self, position: int) -> bool:
        return True if self._costs is None else self._costs.allows_forward(position)

    def should_draft(self, features: DraftFeatures) -> bool:
        return True if self._costs is None else self._costs.should_draft(features)

    def observe(self, verification: Verification) -> None:
        if self._costs is not None:
            self._costs.observe(verification)

    def decide(self, features: TokenFeatures) -> Decision:
        unscored = features.deterministic or (features.hidden is None and self.wants_hidden)
        if unscored:  # a lookup token has no distribution (or state) to score
            return Decision.CONTINUE if self._costs is None else self._costs.decide(features)
        start = time.perf_counter()
        # Everything here works on a few hundred numbers (and one softmax for the lazy features):
        # a second intra-op thread only adds synchronisation, which on a busy CPU costs milliseconds.
        threads = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)
        try:
            decision = self._decide(features)
        finally:
            if threads > 1:
                torch.set_num_threads(threads)
        self.overhead_seconds += time.perf_counter() - start
        return decision

    def _decide(self, features: TokenFeatures) -> Decision:
        if features.position == 0:
            self._reset_round()
        if not self._checked and features.hidden is not None:
            self._check_hidden(features.hidden)
        hidden = features.hidden if features.hidden is not None else self._no_hidden
        scalars = scalar_features(features.prob, features.entropy, features.margin, features.top_prob)
        if self._scorer is not None:  # an MLP scores each token once, as it comes
            self._log_hazards.append(self._scorer.log_hazard(hidden, scalars, features.position, features.token))
        else:  # attention reads the whole round
            self._hidden.append(hidden)
            self._scalars.append(scalars)
            self._tokens.append(features.token)
            self._positions.append(features.position)
        if self._costs is not None:
            return self._costs.decide_scored(features, self.block_score(1))
        if len(self._log_hazards if self._scorer is not None else self._tokens) % self.block:
            return Decision.CONTINUE
        return Decision.CONTINUE if self.block_score() >= self.tau else Decision.STOP

    def block_score(self, size: int | None = None) -> float:
        """P(the last `size` tokens (a block) are accepted | the earlier ones were), from this round's tokens."""
        self.evaluations += 1
        b = self.block if size is None else size
        if self._scorer is not None:
            return math.exp(sum(self._log_hazards[-b:]))
        with torch.inference_mode():
            hidden = torch.stack(self._hidden).float()
            scalars = torch.tensor(self._scalars)
            positions = torch.tensor(self._positions)
            tokens = torch.tensor(self._tokens)
            logits = self.network(hidden, scalars, positions, tokens)[-b:]
            return float(torch.nn.functional.logsigmoid(logits).sum().exp())

    def _check_hidden(self, hidden: torch.Tensor) -> None:
        expected = self.network.config.hidden_size
        if hidden.shape[-1] != expected:
            raise ConfigurationError(
                f"the pre-verifier was trained for the draft {self.network.config.draft_name or '?'!r} with hidden "
                f"size {expected}, but the draft's hidden states have size {hidden.shape[-1]}; train one with "
                "`specdec train-pacer` and pass --policy-param path=DIR"
            )
        self._checked = True

    def _reset_round(self) -> None:
        self._log_hazards.clear()
        self._hidden.clear()
        self._scalars.clear()
        self._tokens.clear()
        self._positions.clear()
