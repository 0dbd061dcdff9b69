"""KV caches are reused and cropped: the target processes each token once, never the prefix again."""

from __future__ import annotations

import attrs
import pytest
import torch

from specdec import Decoder
from specdec.features import TokenFeatures
from specdec.policy import Decision, PolicyBase, RoundState
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer
from tests.models import real_model


@attrs.define
class AlternatingPolicy(PolicyBase):
    """Drafts k tokens on even rounds and nothing (a plain target step) on odd rounds."""

    name = "alternating"
    k: int = 3
    rounds: int = 0

    def begin_round(self, state: RoundState) -> int:
        self.rounds += 1
        return self.k if self.rounds % 2 else 0

    def decide(self, features: TokenFeatures) -> Decision:
        return Decision.CONTINUE


def tiny_pair(policy) -> Decoder:
    return Decoder(real_model("stories260K"), proposer=DraftModelProposer(real_model("stories260K-draft")), policy=policy)


@pytest.mark.parametrize("policy", [FixedPolicy(1), FixedPolicy(4), AlternatingPolicy()], ids=repr)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_target_processes_prompt_plus_drafts_plus_one_per_round(policy, temperature):
    decoder = tiny_pair(policy)
    result = decoder.generate("Once upon a time", 60, temperature=temperature)
    s = result.stats
    # round 1 feeds the prompt; every later round feeds the one uncached emitted token; plus drafts
    assert s.target_tokens == len(result.prompt_ids) + (s.rounds - 1) + s.drafted
    assert s.target_forwards == s.rounds


def test_zero_token_rounds_are_plain_target_steps_and_stay_exact():
    reference = Decoder(real_model("stories260K")).generate("The little cat", 48)
    result = tiny_pair(AlternatingPolicy()).generate("The little cat", 48)
    assert result.ids == reference.ids
    assert 0 < result.stats.drafted < 48


def test_cache_is_reused_across_calls_sharing_a_prefix():
    decoder = tiny_pair(FixedPolicy(3))
    first = decoder.generate("Once upon a time", 20)
    again = decoder.generate("Once upon a time", 20)
    assert first.ids == again.ids
    # the second call found the prompt cached: it fed at most the last prompt token per model
    assert again.stats.target_tokens == 1 + (again.stats.rounds - 1) + again.stats.drafted


def test_hf_crop_then_continue_matches_a_fresh_forward():
    model = real_model("stories260K")
    ids = [1, 400, 260, 300, 450, 290, 310]
    model.reset()
    model.forward(ids[:5] + [33, 44], keep=1)
    model.crop(5)
    resumed = model.forward(ids[5:], keep=2).logits
    model.reset()
    fresh = model.forward(ids, keep=2).logits
    assert model.cached_length == len(ids)
    torch.testing.assert_close(resumed, fresh, rtol=1e-5, atol=1e-5)


def test_two_decoders_sharing_a_target_do_not_corrupt_each_other():
    target = real_model("stories260K")
    plain = Decoder(target)
    spec = tiny_pair(FixedPolicy(3))
    a = plain.generate("Tom had a ball", 30).ids
    b = spec.generate("Lily saw a bird", 30).ids
    assert plain.generate("Tom had a ball", 30).ids == a
    assert spec.generate("Lily saw a bird", 30).ids == b
    assert spec.generate("Tom had a ball", 30).ids == a


@pytest.mark.parametrize("lean", [False, True], ids=["transformers-stack", "lean-stack"])
def test_kv_buffers_append_in_place_and_match_a_fresh_forward(lean):
    """Both stacks' KV buffers give the logits of a fresh forward after appends, crops and regrowth."""
    from specdec.integrations.loading import load_model
    from specdec.integrations.kv_cache import GrowingLayer
    from tests.models import model_path

    model = load_model(model_path("stories260K"), lean=lean)

    def key_buffer():
        return model.stack._keys if lean else model.stack.cache.layers[0]._key_buffer

    if not lean:
        assert all(isinstance(layer, GrowingLayer) for layer in model.stack.cache.layers)
    ids = list(range(1, 300))  # crosses the initial 256-entry capacity
    model.forward(ids[:100])
    buffer = key_buffer()
    model.forward(ids[100:110])
    assert key_buffer() is buffer  # appended, not re-allocated
    model.crop(105)
    out = model.forward(ids[105:300], keep=3)
    assert key_buffer() is not buffer  # grew
    model.reset()
    fresh = model.forward(ids, keep=3)
    assert torch.allclose(out.logits, fresh.logits, atol=1e-4)


def test_tail_view_behaves_like_the_sliced_list():
    from specdec.strategies.proposers.draft_model import TailView

    tokens = list(range(10, 20))
    for offset in (0, 3, 10, 12):
        view, expected = TailView(tokens, offset), tokens[offset:]
        assert len(view) == len(expected) and list(view) == expected
        for a, b in ((None, None), (1, None), (0, 2), (2, 100), (-2, None)):
            assert view[a:b] == expected[a:b]
        if expected:
            assert view[0] == expected[0] and view[-1] == expected[-1]
        with pytest.raises(IndexError):
            view[len(expected)]
