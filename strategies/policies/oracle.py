"""ANALYSIS ONLY: an oracle that knows the target's greedy continuation in advance."""

from __future__ import annotations

import operator
from typing import Any, Sequence

import attrs

from specdec.errors import ConfigurationError
from specdec.features import DraftFeatures, TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState, positive_int
from specdec.verification import Verification


def _token_ids(value: Sequence[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        items = list(value)
        ids = tuple(operator.index(t) for t in items)
    except TypeError:
        ids = None
    if ids is None or any(t < 0 for t in ids) or any(isinstance(t, bool) for t in items):
        raise ConfigurationError(f"the oracle's continuation must be token ids (integers >= 0), got {value!r}")
    return ids


@attrs.define
class OraclePolicy(PolicyBase):
    """ANALYSIS ONLY, not a usable policy: it peeks at the target's future output.

    Holds `continuation`, the prompt followed by the target-only greedy output (token ids, see
    `from_target`). Before each draft token is drawn, the round ends if the draft's most likely
    token (`top_token`, the proposed token itself for deterministic proposals) differs from the
    continuation at that absolute position (context_length + position) or lies past its end.
    Under greedy decoding the draft token is that argmax, so the oracle drafts exactly the tokens
    the verifier will accept: an upper bound for stopping rules, given the proposer.

    At T > 0 a drawn token may still leave the greedy path; it is kept and the round stops after
    it (a drawn token is never discarded for its value, which would bias the output). The output
    then leaves the continuation and the oracle stops being informative (`diverged_at` records
    where), but it stays exact. `max_draft` caps a round (default 40, as SVIP). Without a
    continuation, `begin_round` raises ConfigurationError.
    """

    name = "oracle"
    continuation: tuple[int, ...] | None = attrs.field(default=None, converter=_token_ids)
    max_draft: int = attrs.field(default=40, validator=positive_int)
    diverged_at: int | None = attrs.field(init=False, default=None)
    _context_length: int = attrs.field(init=False, default=0, repr=False)

    @classmethod
    def from_target(
        cls,
        decoder_or_target: Any,
        prompt: str | Sequence[int],
        max_new_tokens: int,
        *,
        chat: bool = False,
        max_draft: int = 40,
    ) -> OraclePolicy:
        """Decode `prompt` greedily with the target alone (through `specdec.Decoder`) and hold the result."""
        from specdec.decoder import Decoder

        target = decoder_or_target.target if isinstance(decoder_or_target, Decoder) else decoder_or_target
        result = Decoder(target).generate(prompt, max_new_tokens, temperature=0.0, chat=chat)
        return cls(continuation=result.prompt_ids + result.ids, max_draft=max_draft)

    def set_continuation(self, ids: Sequence[int]) -> None:
        """Replace the continuation (the prompt plus the target's greedy output) before a `generate` call."""
        self.continuation = _token_ids(ids)
        self.diverged_at = None

    def start(self) -> None:
        self.diverged_at = None

    def begin_round(self, state: RoundState) -> int:
        if self.continuation is None:
            raise ConfigurationError(
                "the oracle policy needs the target's greedy continuation: build it with "
                "OraclePolicy.from_target(...) or call set_continuation(prompt + output ids) first"
            )
        self._context_length = state.context_length
        return max(0, min(self.max_draft, len(self.continuation) - state.context_length))

    def should_draft(self, features: DraftFeatures) -> bool:
        return self._expects(features.position, features.top_token)

    def decide(self, features: TokenFeatures) -> Decision:
        return Decision.CONTINUE if self._expects(features.position, features.token) else Decision.STOP

    def _expects(self, position: int, token: int) -> bool:
        index = self._context_length + position
        return self.continuation is not None and index < len(self.continuation) and self.continuation[index] == token

    def observe(self, verification: Verification) -> None:
        if self.diverged_at is not None or self.continuation is None:
            return
        for offset, token in enumerate(verification.tokens):
            index = verification.context_length + offset
            if index < len(self.continuation) and self.continuation[index] != token:
                self.diverged_at = index
                return
