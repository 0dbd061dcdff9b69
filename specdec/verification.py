"""The verifier's verdict on one round, shared with policies and proposers for adaptation."""

from __future__ import annotations

import attrs


@attrs.frozen
class Verification:
    """Outcome of verifying a draft against one target forward.

    `tokens` are the tokens to emit: the accepted draft prefix, then the correction (after a
    rejection) or the bonus token (when all were accepted), except after an accepted EOS.
    `target_argmax[i]` is the target's most likely token at draft position i (i == drafted is the
    bonus position); proposers harvest phrases from it and the oracle policy analyses with it.
    Rounds that drafted nothing (plain target steps) are reported too, with drafted == 0.
    """

    drafted: int
    accepted: int
    tokens: tuple[int, ...]
    target_argmax: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False)
    eos: bool = False
    # filled in by the decoder, for policies that weigh cost (0.0 when unknown)
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    context_length: int = 0  # committed tokens before this round

    @property
    def all_accepted(self) -> bool:
        return self.accepted == self.drafted
