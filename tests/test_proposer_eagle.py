"""The `eagle` proposer and the path of the target's hidden states to it.

The target's forwards return the chosen layers' states at every position fed (lean llama and
transformers' stacks alike, checked against transformers' `output_hidden_states`); the decoder
hands the proposer exactly the states of the positions each round commits (chains and token
trees); the head drafts from the same inputs training gives it (the logits it drafts from equal
the head run over the whole final sequence); and the output is exact: the exact enumeration
(every policy, `tests/toy_strategies.py`) plus the planted draws below, greedy identity on the
real pairs and coupled-sampling identity on the tiny pair, with random heads (identity does not
depend on what the head proposes).
"""

from __future__ import annotations

import copy

import attrs
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import specdec.decoder
from specdec import ConfigurationError, Decoder
from specdec.draft import Branch
from specdec.integrations.loading import load_model
from specdec.proposer import ModelFree, ProposalRequest
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers.eagle import EagleHead, EagleProposer, HeadConfig, save_head
from specdec.testing import LosslessCase, assert_case_lossless
from tests.eagle_strategies import toy_head
from tests.models import model_path, real_model
from tests.test_lossless_exact import GreedyDrawWithSoftQ, RawQBeforeTopKTopP, drafting_through
from tests.toy_strategies import lossless_cases

PROMPTS = ["Once upon a time", "The little dog", "Lily wanted to"]


def random_head(target, style: str = "eagle1", seed: int = 0, draft_tokens: int | None = None) -> EagleHead:
    """An untrained head shaped for a real target (its attention heads and MLP width)."""
    config = target.model.config
    head = EagleHead(HeadConfig(
        style=style, hidden_size=target.hidden_size, intermediate_size=config.intermediate_size,
        num_heads=config.num_attention_heads, num_kv_heads=config.num_key_value_heads, vocab_size=target.vocab_size,
        draft_vocab_size=draft_tokens or target.vocab_size, target_hidden_size=target.hidden_size, own_head=style == "eagle3",
    ))
    torch.manual_seed(seed)
    for module in head.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.05)
    if draft_tokens:
        head.set_draft_vocabulary(torch.arange(draft_tokens))
    return head


# ----------------------------------------------------------------------------- the target's states
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "transformers"])
def test_forwards_return_the_chosen_layers_at_every_position_fed(lean):
    """Pieces fed through the cache (a prompt, a chain, a tree) give transformers' hidden states of
    the whole sequence, row for row; the last layer is the final normed output."""
    target = load_model(model_path("stories260K"), lean=lean)
    layers = (0, 2, target.num_layers)
    ids = [1, 403, 29, 365, 2201 % 512, 75, 88, 101, 7]
    first = target.forward(ids[:5], keep=2, features=layers)
    second = target.forward(ids[5:7], features=layers)
    # a tree after them: two children of the last token, the first with a child of its own
    third = target.forward_tree([ids[7], 300, ids[8]], [-1, -1, 0], keep=3, hidden=True, features=layers)
    with torch.inference_mode():
        chain = target.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        branch = target.model(torch.tensor([ids[:7] + [300]]), output_hidden_states=True).hidden_states
    for i, layer in enumerate(layers):
        fed = torch.cat([first.features[i], second.features[i], third.features[i][[0, 2]]])
        assert fed.shape == (len(ids), target.hidden_size)
        assert torch.allclose(fed, chain[layer][0], atol=1e-4), layer
        assert torch.allclose(third.features[i][1], branch[layer][0, -1], atol=1e-4), layer
    assert torch.allclose(third.features[2], third.hidden, atol=1e-6)


@attrs.define
class Recorder(ModelFree):
    """Drafts the target's own greedy text, in turn right, with its second token wrong, and with
    it wrong and the right one on a branch; keeps every state handed over."""

    name = "recorder"
    text: list[int]  # prompt and greedy continuation
    layers: tuple[int, ...]
    received: list = attrs.field(factory=list)
    rounds: int = 0

    @property
    def target_layers(self) -> tuple[int, ...]:
        return self.layers

    def start(self, prompt, sampling) -> None:
        self.received.clear()

    def propose(self, request: ProposalRequest):
        at = len(request.context)
        right = self.text[at : at + 3]
        self.rounds += 1
        if len(right) < 3 or self.rounds % 3 == 0:
            request.offer_each(right)
            return request.draft()
        request.offer_each([right[0], (right[1] + 1) % 512, right[2]])
        branched = self.rounds % 3 == 2 and request.tree_depth >= 3 and len(request.tokens) == 3
        branches = [Branch(1, tuple(right[1:]))] if branched else []
        return request.draft(branches)

    def observe(self, verification) -> None:
        self.received.append(verification.target_features)


def test_the_decoder_hands_over_the_states_of_exactly_the_committed_positions():
    """Concatenated in order, the handed-over states are the target's states of the whole context
    but its last token: the tail it had not read, accepted draft tokens and accepted branch nodes;
    never a rejected token's."""
    target = real_model("stories260K")
    layers = (1, target.num_layers)
    greedy = Decoder(target).generate("Once upon a time", 40)
    recorder = Recorder(list(greedy.prompt_ids) + list(greedy.ids), layers)
    decoder = Decoder(target, proposer=recorder, policy=FixedPolicy(3))
    result = decoder.generate("Once upon a time", 36)
    stats = result.stats
    assert 0 < stats.accepted < stats.drafted and stats.branch_accepted > 0  # accepted, rejected and branch tokens
    context = list(result.prompt_ids) + list(result.ids)
    with torch.inference_mode():
        expected = target.model(torch.tensor([context]), output_hidden_states=True).hidden_states
    assert recorder.received[0].start == 0
    for i, layer in enumerate(layers):
        got = torch.cat([features.layers[i] for features in recorder.received])
        assert got.shape[0] == len(context) - 1
        assert torch.allclose(got, expected[layer][0, :-1], atol=1e-4), layer
    starts = [f.start for f in recorder.received]
    assert starts == sorted(starts) and all(b - a == len(f) for a, b, f in zip(starts, starts[1:], recorder.received))


def test_a_target_without_states_is_refused_by_name():
    @attrs.define
    class Plain:
        name = "plain"

    with pytest.raises(ConfigurationError, match="does not return its hidden states"):
        EagleProposer.from_head(Plain(), toy_head(4, "eagle1", 0, 4))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- drafting inputs
class RecordingEagle(EagleProposer):
    """Keeps the logits of the first draft token of every round, with the context length."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.firsts: list[tuple[int, torch.Tensor]] = []

    def propose(self, request):
        original = self._logits

        def first(state):
            logits = original(state)
            if not request.tokens:
                self.firsts.append((len(request.context), logits.clone()))
            return logits

        self._logits = first
        try:
            return super().propose(request)
        finally:
            del self._logits


@pytest.mark.parametrize("style", ["eagle1", "eagle3"])
def test_the_head_drafts_from_what_a_forward_over_the_whole_sequence_gives(style):
    """The first draft token of a round at position m comes from head slot m - 2 of the whole
    committed sequence (tokens 1..m-1 with the target's states 0..m-2): what training computes."""
    target = real_model("stories260K")
    head = random_head(target, style, seed=1, draft_tokens=300 if style == "eagle3" else None)
    proposer = RecordingEagle.from_head(target, head)
    result = Decoder(target, proposer=proposer, policy=FixedPolicy(3)).generate("Once upon a time", 40, temperature=1.0, seed=5)
    context = list(result.prompt_ids) + list(result.ids)
    assert len(proposer.firsts) > 5
    with torch.inference_mode():
        states = target.model(torch.tensor([context]), output_hidden_states=True).hidden_states
        layers = [states[layer][0, :-1] for layer in head.config.layers]
        tokens = torch.tensor([context[1:]])
        logits = head.logits(head(tokens, head.fuse(layers).unsqueeze(0))[0])
    for m, drafted in proposer.firsts:
        assert torch.allclose(drafted, logits[m - 2], atol=1e-4), m


# ----------------------------------------------------------------------------- exactness
@pytest.mark.exhaustive
@pytest.mark.parametrize("mutant", [GreedyDrawWithSoftQ, RawQBeforeTopKTopP])
def test_the_exact_test_catches_a_broken_draw_through_the_head(mutant):
    """The exact test covers the eagle path: a head drafting through a planted draw fails it."""

    @settings(max_examples=300, phases=[Phase.generate], derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def check(data):
        case = data.draw(lossless_cases("fixed", "eagle"))
        head = case.make_proposer().head
        planted = LosslessCase(case.pair, case.prompt, case.max_new_tokens, case.sampling, case.policy,
                               lambda: drafting_through(mutant, EagleProposer).from_head(case.pair.target, head))
        assert_case_lossless(planted)

    with pytest.raises(AssertionError):
        check()


@pytest.mark.parametrize("style, lean, policies", [
    ("eagle1", True, ("fixed", "auto")), ("eagle3", True, ("svip",)), ("eagle1", False, ("fixed",)),
], ids=["eagle1-lean", "eagle3-lean", "eagle1-transformers"])
def test_tiny_pair_greedy_output_is_the_targets_with_an_untrained_head(style, lean, policies):
    target = load_model(model_path("stories260K"), lean=lean)
    expected = {prompt: Decoder(target).generate(prompt, 32).ids for prompt in PROMPTS[:2]}
    for policy in policies:
        decoder = Decoder(target, proposer=EagleProposer.from_head(target, random_head(target, style)), policy=policy)
        for prompt in PROMPTS[:2]:
            result = decoder.generate(prompt, 32)
            assert result.ids == expected[prompt], (policy, prompt)
            assert result.stats.drafted > 0 or policy == "auto"


def test_coupled_sampling_with_the_head_is_target_only_sampling():
    target = real_model("stories260K")
    decoder = Decoder(target, proposer=EagleProposer.from_head(target, random_head(target, "eagle3", draft_tokens=300)), policy="fixed")
    for seed, (t, k, p) in enumerate([(1.0, None, None), (0.7, 20, 0.9)]):
        result = decoder.generate(PROMPTS[0], 24, temperature=t, top_k=k, top_p=p, seed=seed, coupled=True)
        assert result.ids == Decoder(target).generate(PROMPTS[0], 24, temperature=t, top_k=k, top_p=p, seed=seed, coupled=True).ids
        assert result.stats.drafted > 0


@pytest.mark.slow
def test_default_pair_greedy_output_is_the_targets_with_an_untrained_head():
    """Both designs (EAGLE-3 with a trimmed head) on Spec-Bench prompts in the chat template."""
    from tests.test_real_greedy_identity import spec_bench_prompts

    target = real_model("smollm2-135m-instruct")
    prompts = [Decoder(target).encode(prompt, chat=True) for prompt in spec_bench_prompts(2)]
    for style, ids in zip(("eagle1", "eagle3"), prompts):
        decoder = Decoder(target, proposer=EagleProposer.from_head(target, random_head(target, style, draft_tokens=4096)), policy="fixed")
        result = decoder.generate(ids, 32)
        assert result.ids == Decoder(target).generate(ids, 32).ids, style
        assert result.stats.drafted > 0


# ----------------------------------------------------------------------------- by name, files, errors
def test_by_name_the_decoder_lends_the_target_and_a_path_selects_the_head(tmp_path):
    target = real_model("stories260K")
    save_head(random_head(target, "eagle1"), tmp_path / "head", target_name="stories260K",
              target_fingerprint=specdec.strategies.proposers.eagle.proposer.target_fingerprint(target))
    decoder = Decoder(target, proposer="eagle", policy="fixed", proposer_params={"path": str(tmp_path / "head")})
    assert decoder.proposer.target_layers == (target.num_layers,)
    assert decoder.generate(PROMPTS[0], 20).ids == Decoder(target).generate(PROMPTS[0], 20).ids
    with pytest.raises(ConfigurationError, match="does not use a draft model"):
        Decoder(target, proposer="eagle", draft=real_model("stories260K-draft"), proposer_params={"path": str(tmp_path / "head")})


def test_a_head_trained_for_another_target_is_refused(tmp_path):
    target = real_model("stories260K")
    save_head(random_head(target, "eagle1"), tmp_path, target_name="other", target_fingerprint="0123456789abcdef")
    with pytest.raises(ConfigurationError, match="trained for the target 'other'.*train-eagle"):
        Decoder(target, proposer="eagle", proposer_params={"path": str(tmp_path)})


def test_without_a_path_and_no_shipped_head_the_error_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr(specdec.strategies.proposers.eagle.proposer, "default_path", lambda: tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="specdec train-eagle"):
        Decoder(real_model("stories260K"), proposer="eagle")


def test_the_proposer_is_listed_with_its_parameter_only():
    from specdec.plugins import registry

    entry = registry().get("proposer", "eagle")
    assert [p.name for p in entry.parameters()] == ["path"] and not entry.uses_draft_model
