"""The fixed policy: k tokens every round, fewer only at the length limit."""

from __future__ import annotations

import attrs
import pytest

from specdec import Decoder
from specdec.integrations.toy import ToyModel
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer

TABLE = {(): [0.1, 0.2, 0.3, 0.4], (0,): [0.1, 0.6, 0.2, 0.1], (1,): [0.2, 0.2, 0.5, 0.1], (2,): [0.3, 0.1, 0.2, 0.4],
         (3,): [0.4, 0.3, 0.2, 0.1]}


@attrs.define
class Recording(FixedPolicy):
    rounds: list[tuple[int, int]] = attrs.field(factory=list)  # (tokens the call may still generate, drafted)
    _remaining: int = 1  # a round the decoder does not ask about (one token left) drafts nothing

    def begin_round(self, state):
        self._remaining = state.remaining
        return super().begin_round(state)

    def observe(self, verification):
        self.rounds.append((self._remaining, verification.drafted))
        self._remaining = 1


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_every_round_drafts_k_tokens_unless_the_length_limit_leaves_fewer(k, temperature):
    target = ToyModel.from_probabilities(TABLE, 4, order=1)
    draft = ToyModel.from_probabilities({key: row[::-1] for key, row in TABLE.items()}, 4, order=1)
    policy = Recording(k)
    Decoder(target, proposer=DraftModelProposer(draft), policy=policy).generate([0, 1], 12, temperature=temperature)
    assert policy.rounds and all(drafted == min(k, remaining - 1) for remaining, drafted in policy.rounds)
