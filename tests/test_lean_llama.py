"""The lean llama forward computes what transformers computes, on real models, in every mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specdec.integrations.hf import HFModel, TransformersStack, decoder_stack
from specdec.integrations.loading import load_model
from specdec.integrations.lean_llama import LeanLlama, unsupported_reason
from specdec.integrations.projection import FloatProjection, projection
from tests.models import model_path, real_model

TOLERANCE = 2e-4  # float32 rounding of different GEMM kernels; logits are O(10)


def both(name: str) -> tuple[HFModel, HFModel]:
    lean = real_model(name)
    plain = load_model(model_path(name), lean=False)
    assert isinstance(lean.stack, LeanLlama) and isinstance(plain.stack, TransformersStack)
    lean.reset()
    return lean, plain


def assert_same(a, b) -> None:
    assert torch.allclose(a.logits, b.logits, atol=TOLERANCE, rtol=0), (a.logits - b.logits).abs().max()
    assert torch.equal(a.logits.argmax(-1), b.logits.argmax(-1))
    if a.hidden is not None or b.hidden is not None:
        assert torch.allclose(a.hidden, b.hidden, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", ["stories260K", pytest.param("smollm2-draft", marks=pytest.mark.slow)])  # slow: the default pair's draft
def test_steps_crops_trees_and_compaction_match_transformers(name):
    lean, plain = both(name)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, lean.vocab_size, (120,), generator=generator).tolist()
    assert_same(lean.forward(prompt, keep=3, hidden=True), plain.forward(prompt, keep=3, hidden=True))
    for n in (1, 2, 3, 4, 5, 8):  # both GEMM kernels (packed from 4 rows)
        tokens = torch.randint(3, lean.vocab_size, (n,), generator=generator).tolist()
        assert_same(lean.forward(tokens, keep=n, hidden=True), plain.forward(tokens, keep=n, hidden=True))
    for model in (lean, plain):  # rejected drafts: the next forward overwrites their slots
        model.crop(125)
    assert_same(lean.forward([7, 8], keep=2), plain.forward([7, 8], keep=2))
    tree, parents = [11, 12, 13, 14, 15], [-1, 0, -1, 2, 3]
    assert_same(lean.forward_tree(tree, parents, keep=5), plain.forward_tree(tree, parents, keep=5))
    for model in (lean, plain):
        model.compact(127, [129, 130, 131])
    assert lean.cached_length == plain.cached_length == 130
    assert_same(lean.forward([21, 22, 23, 24], keep=4), plain.forward([21, 22, 23, 24], keep=4))
    lean.reset()


@pytest.mark.parametrize("name", ["stories260K", pytest.param("smollm2-draft", marks=pytest.mark.slow)])  # slow: the default pair's draft
def test_a_tree_read_with_its_prompt_gives_each_node_its_own_path(name):
    """The first round reads the prompt and the draft tree in one forward: the prompt's rows run
    causally apart from the masked tree rows (tree_attention). Each tree node must see exactly
    its own path: nodes hang at the prompt's end, on other nodes, and in the prompt's middle."""
    lean, plain = both(name)
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, lean.vocab_size, (90,), generator=generator).tolist()
    nodes = torch.randint(3, lean.vocab_size, (5,), generator=generator).tolist()
    n = len(prompt)
    parents = [i - 1 for i in range(n)] + [n - 1, n, 40, n - 1, n + 3]
    tokens = prompt + nodes
    out = lean.forward_tree(tokens, parents, keep=len(nodes) + 1, hidden=True)
    assert_same(out, plain.forward_tree(tokens, parents, keep=len(nodes) + 1, hidden=True))
    paths = [prompt, prompt + nodes[:1], prompt + nodes[:2], prompt[:41] + nodes[2:3], prompt + nodes[3:4], prompt + nodes[3:5]]
    for row, path in enumerate(paths):
        lean.reset()
        alone = lean.forward(path, keep=1, hidden=True)
        assert torch.allclose(out.logits[row], alone.logits[0], atol=TOLERANCE, rtol=0), (row, (out.logits[row] - alone.logits[0]).abs().max())
    lean.reset()


@pytest.mark.slow
def test_int8_and_trimmed_head_views_match_transformers():
    lean, plain = both("smollm2-draft")
    prompt = list(range(100, 160))
    for make in (lambda m: m.quantized(), lambda m: m.with_head_subset(range(0, 20000, 2)), lambda m: m.quantized().with_head_subset(range(5000))):
        a, b = make(lean), make(plain)
        assert isinstance(a.stack, LeanLlama)
        assert_same(a.forward(prompt, keep=2), b.forward(prompt, keep=2))
        assert_same(a.forward([5, 6, 7, 8, 9], keep=5), b.forward([5, 6, 7, 8, 9], keep=5))
    lean.reset()


def test_views_share_weights_but_not_caches():
    lean = real_model("stories260K")
    lean.reset()
    view = lean.with_head_subset(range(100))
    assert view.stack.layers is lean.stack.layers
    view.forward([1, 2, 3])
    assert lean.cached_length == 0 and view.cached_length == 3


def test_other_architectures_keep_the_transformers_forward():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
    )
    model = LlamaForCausalLM(config)  # structure only: never used to measure anything
    assert "rotary" in unsupported_reason(model)
    assert isinstance(decoder_stack(model), TransformersStack)
    with pytest.raises(ValueError, match="cannot run this model"):
        LeanLlama(model)
    assert unsupported_reason(real_model("stories260K").model) is None


@pytest.mark.parametrize("rows", [1, 3, 4, 7, 17])
def test_fused_projection_equals_separate_products(rows):
    generator = torch.Generator().manual_seed(rows)
    layers = [torch.nn.Linear(24, width, bias=width == 8) for width in (16, 8, 8)]
    fused = projection(*layers)
    assert isinstance(fused, FloatProjection) and fused.out_features == 32
    x = torch.randn(rows, 24, generator=generator)
    expected = torch.cat([F.linear(x, layer.weight, layer.bias) for layer in layers], dim=-1)
    assert torch.allclose(fused(x), expected, atol=1e-5)
