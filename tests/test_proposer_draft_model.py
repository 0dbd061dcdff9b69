"""The draft-model proposer: the draft's own tokens, its context window, and cheaper drafts."""

from __future__ import annotations

import pytest

from specdec import ConfigurationError, SamplingConfig, TorchSampler
from specdec.integrations.toy import ToyModel
from specdec.proposer import ProposalRequest
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer

TABLE = {(): [0.1, 0.2, 0.3, 0.4], (0,): [0.1, 0.6, 0.2, 0.1], (1,): [0.2, 0.2, 0.5, 0.1], (2,): [0.3, 0.1, 0.2, 0.4],
         (3,): [0.4, 0.3, 0.2, 0.1]}


def draft_model() -> ToyModel:
    return ToyModel.from_probabilities(TABLE, 4, order=1)


def test_greedy_drafts_are_the_drafts_own_greedy_continuation():
    proposer = DraftModelProposer(draft_model())
    context = [3, 0]
    proposer.start(context, SamplingConfig())
    draft = proposer.propose(ProposalRequest(context, 4, FixedPolicy(4), SamplingConfig(), TorchSampler(0)))
    assert draft.tokens == (1, 2, 3, 0)  # argmax after 0 is 1, after 1 is 2, after 2 is 3, after 3 is 0
    assert draft.q == (None,) * 4 and draft.forwards == 4


def test_the_context_window_reads_only_the_prompts_tail():
    model = draft_model()
    proposer = DraftModelProposer(model, context_window=3)
    prompt = [0, 1, 2, 3, 0, 1, 2]
    proposer.start(prompt, SamplingConfig())
    assert proposer.pending(prompt) == 3  # the window, not the whole prompt
    proposer.propose(ProposalRequest(prompt, 1, FixedPolicy(1), SamplingConfig(), TorchSampler(0)))
    assert model.ids == [3, 0, 1, 2][-len(model.ids):] and len(model.ids) == 3


@pytest.mark.parametrize("params", [{"int8": True}, {"head_tokens": 2}])
def test_a_cheaper_draft_needs_a_model_that_can_be_made_cheaper(params):
    with pytest.raises(ConfigurationError, match="transformers draft model"):
        DraftModelProposer(draft_model(), **params)
