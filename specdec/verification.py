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
    """

    drafted: int
    accepted: int
    tokens: tuple[int, ...]
    target_argmax: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False)
    eos: bool = False

    @property
    def all_accepted(self) -> bool:
        return self.accepted == self.drafted
