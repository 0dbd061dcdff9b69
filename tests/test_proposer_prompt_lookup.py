"""The prompt-lookup proposer: model-free n-gram copying from the context."""

from __future__ import annotations

from specdec import Decision
from specdec.proposer import ProposalRequest
from specdec.samplers import TorchSampler
from specdec.sampling import SamplingConfig
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import PromptLookupProposer


def request(context, budget, policy=None):
    return ProposalRequest(context, budget, policy or FixedPolicy(budget), SamplingConfig(), TorchSampler(0))


def test_prompt_lookup_proposes_the_recent_continuation_and_asks_the_policy_each_token():
    class StopAtThird(FixedPolicy):
        seen: list

        def decide(self, features):
            self.seen.append(features)
            return Decision.STOP if features.position == 2 else Decision.CONTINUE

    policy = StopAtThird(8)
    policy.seen = []
    proposer = PromptLookupProposer(num_tokens=10)
    context = [4, 5, 6, 7, 8, 9, 4, 5, 1, 2, 3, 0, 4, 5]
    proposer.start(context, SamplingConfig())
    draft = proposer.propose(request(context, 8, policy))
    assert draft.tokens == (1, 2, 3)  # the most recent "4 5" was followed by 1 2 3
    assert draft.q == (None, None, None)
    assert [f.deterministic for f in policy.seen] == [True, True, True]
    leftmost = PromptLookupProposer(num_tokens=10, match="leftmost")
    leftmost.start(context, SamplingConfig())
    assert leftmost.propose(request(context, 3)).tokens == (6, 7, 8)


def test_prompt_lookup_respects_the_budget_and_drafts_nothing_without_a_match():
    proposer = PromptLookupProposer()
    proposer.start([1, 2, 3, 1, 2], SamplingConfig())
    assert proposer.propose(request([1, 2, 3, 1, 2], 2)).tokens == (3, 1)
    proposer.start([1, 2, 3], SamplingConfig())
    assert len(proposer.propose(request([1, 2, 3], 4))) == 0
