"""The drafting loop every proposer goes through (`ProposalRequest`), and the facts it reports."""

from __future__ import annotations

import attrs
import pytest
import torch

from specdec import ConfigurationError, Decision, Decoder, SamplingConfig, TorchSampler
from specdec.integrations.toy import ToyModel
from specdec.policy import PolicyBase, RoundState
from specdec.proposer import ProposalRequest
from specdec.sequence_cache import SequenceCache
from specdec.strategies.proposers import DraftModelProposer, PromptLookupProposer


@attrs.define
class Scripted(PolicyBase):
    """A policy that answers from scripts: `draft` for should_draft, `decisions` for decide."""

    name = "scripted"
    draft: list[bool] = attrs.field(factory=list)
    decisions: list[Decision] = attrs.field(factory=list)
    forwards: list[bool] = attrs.field(factory=list)
    asked: list[int] = attrs.field(factory=list)

    def begin_round(self, state: RoundState) -> int:
        return 8

    def allows_forward(self, position: int) -> bool:
        self.asked.append(position)
        return self.forwards.pop(0) if self.forwards else True

    def should_draft(self, features) -> bool:
        return self.draft.pop(0) if self.draft else True

    def decide(self, features) -> Decision:
        return self.decisions.pop(0) if self.decisions else Decision.CONTINUE


def request(policy, *, budget: int = 8, temperature: float = 0.0, eos: frozenset[int] = frozenset()) -> ProposalRequest:
    return ProposalRequest([0, 1, 2], budget, policy, SamplingConfig(temperature=temperature), TorchSampler(0), eos)


LOGITS = torch.tensor([0.0, 3.0, 1.0, 0.5])  # argmax 1


def test_offered_tokens_stop_at_the_budget_an_end_token_or_a_stop():
    r = request(Scripted(), budget=3)
    assert r.offer_each([5, 6, 7, 8]) == 3 and r.tokens == (5, 6, 7) and r.over
    r = request(Scripted(), eos=frozenset({6}))
    assert r.offer_each([5, 6, 7]) == 2 and r.over  # the end token is kept, nothing after it
    r = request(Scripted(decisions=[Decision.CONTINUE, Decision.STOP]))
    assert r.offer_each([5, 6, 7]) == 2 and r.over  # STOP keeps the token, then the draft is over
    assert not r.offer(9) and r.tokens == (5, 6)


def test_a_declined_offer_leaves_the_position_open_for_another_proposal():
    r = request(Scripted(draft=[False]))
    assert not r.offer(5) and not r.over and r.position == 0  # declined before the decision
    assert r.offer(6) and r.tokens == (6,)
    r = request(Scripted(decisions=[Decision.DROP]))
    assert not r.offer(5) and not r.over and r.tokens == ()  # a deterministic token may be dropped
    assert r.draw(LOGITS) and r.tokens == (1,)  # greedy draw: the argmax


def test_the_policys_payoff_prices_proposals_by_their_reported_survival():
    """A token offered with a survival estimate is kept while its reach (the product of the
    survivals so far) exceeds a verify slot's price; one that does not pay is declined without
    ending the draft, and a forward is refused when reach x its token's survival does not pay for
    the forward and the slot. Tokens without an estimate count as certain."""
    policy = Scripted()  # PolicyBase's payoff: a slot 0.1, a forward 0.15
    r = request(policy)
    assert r.offer_each([5, 6, 7, 8], [0.8, 0.5, 0.2, 1.0]) == 2  # reach 0.8, 0.4, then 0.08
    assert r.reach == pytest.approx(0.4) and not r.over
    features = r.draft().features
    assert [f.survival for f in features] == [0.8, 0.5] and features[1].reach == pytest.approx(0.4)
    assert r.offer(9) and r.reach == pytest.approx(0.4)  # no estimate: certain, nothing changes
    assert not r.may_forward(0.5) and policy.asked == []  # 0.2 < 0.25: refused before the policy is asked
    assert r.may_forward(0.7) and policy.asked == [3]  # 0.28 pays
    assert r.may_forward() and policy.asked == [3, 3]
    r = request(Scripted())
    assert not r.offer(5, survival=0.1) and not r.over  # 0.1 does not exceed 0.1
    assert r.offer(5, survival=0.11)


def test_a_draw_refused_before_it_is_made_ends_the_draft():
    r = request(Scripted(draft=[False]), temperature=1.0)
    assert not r.draw(LOGITS) and r.over and r.tokens == ()
    assert not r.may_forward()  # nothing more this round


def test_a_sampled_token_may_not_be_dropped_but_a_greedy_one_may():
    with pytest.raises(ConfigurationError, match="should_draft"):
        request(Scripted(decisions=[Decision.DROP]), temperature=1.0).draw(LOGITS)
    r = request(Scripted(decisions=[Decision.DROP]))
    assert not r.draw(LOGITS) and r.over and r.tokens == ()


def test_sampled_tokens_carry_the_distribution_they_were_drawn_from_and_deterministic_ones_none():
    r = request(Scripted(), temperature=0.7)
    r.draw(LOGITS)
    r.offer(3)
    draft = r.draft()
    assert draft.q[0] is not None and torch.allclose(draft.q[0], torch.softmax(LOGITS / 0.7, -1))
    assert draft.q[1] is None and draft.features[1].deterministic
    greedy = request(Scripted())
    greedy.draw(LOGITS)
    assert greedy.draft().q == (None,)


def test_forwards_are_counted_when_the_policy_allows_them():
    policy = Scripted(forwards=[True, True, False])
    r = request(policy)
    assert r.may_forward() and r.draw(LOGITS)
    assert r.may_forward() and r.draw(LOGITS)
    assert not r.may_forward()
    assert policy.asked == [0, 1, 2] and r.draft().forwards == 2


def toy_pair(vocab: int = 4) -> tuple[ToyModel, ToyModel]:
    table = {(): [0.1, 0.2, 0.3, 0.4], (0,): [0.4, 0.3, 0.2, 0.1], (1,): [0.25] * 4, (2,): [0.1, 0.6, 0.2, 0.1], (3,): [0.3, 0.3, 0.2, 0.2]}
    return ToyModel.from_probabilities(table, vocab, order=1), ToyModel.from_probabilities(table, vocab, order=1)


def test_a_rounds_forwards_reach_the_policy():
    seen = []

    @attrs.define
    class Recording(Scripted):
        def observe(self, verification) -> None:
            seen.append(verification.draft_forwards)

    target, draft = toy_pair()
    proposer = DraftModelProposer(draft)
    Decoder(target, proposer=proposer, policy=Recording(decisions=[Decision.CONTINUE, Decision.STOP] * 20)).generate([0, 1], 8)
    assert seen and all(n == 2 for n in seen[:-1])  # two tokens a round: two forwards (the last may be cut)
    assert sum(seen) == draft.forwards
    seen.clear()
    Decoder(target, proposer=PromptLookupProposer(), policy=Recording()).generate([0, 1, 0, 1], 4)
    assert seen and not any(seen)  # a model-free proposer forwards nothing


def test_a_model_proposer_reports_the_context_its_model_has_not_read():
    target, draft = toy_pair()
    proposer = DraftModelProposer(draft)
    prompt = [0, 1, 2, 3, 0]
    proposer.start(prompt, SamplingConfig())
    assert proposer.pending(prompt) == len(prompt)  # nothing read yet
    proposer.propose(ProposalRequest(prompt, 1, Scripted(), SamplingConfig(), TorchSampler(0)))
    assert proposer.pending(prompt) == 1  # the prompt is read; only the last token is fed again
    assert proposer.pending(prompt + [1, 2]) == 2  # two new tokens
    assert proposer.pending([3, 3] + prompt) == len(prompt) + 2  # another context: read from the start
    assert PromptLookupProposer().pending(prompt) == 0


def test_a_cache_notices_another_user_of_its_model():
    _, model = toy_pair()
    first, second = SequenceCache(model), SequenceCache(model)
    first.sync([0, 1, 2])
    assert first.unread([0, 1, 2, 3]) == 1
    second.sync([3, 3])  # the model now holds someone else's tokens
    assert first.unread([0, 1, 2, 3]) == 4
    out = first.sync([0, 1, 2, 3])
    assert model.ids == [0, 1, 2, 3] and out.logits.shape[0] == 1
