"""The EAGLE head module and its files: specdec's own layout round-trips, synthetic checkpoints
written in the published EAGLE and EAGLE-3 layouts load onto the same module and compute what
the published designs compute (checked against transformers' llama attention and MLP, wired as
the published heads wire them), and pickles, damaged files and other variants are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP, LlamaRMSNorm, LlamaRotaryEmbedding

from specdec.errors import ConfigurationError, ModelFileError
from specdec.strategies.proposers.eagle import EagleHead, HeadCache, HeadConfig, load_head, save_head

HIDDEN, HEADS, KV_HEADS, INTERMEDIATE, VOCAB, EPS, THETA = 32, 4, 2, 48, 40, 1e-5, 10000.0


def published_config(**extra) -> dict:
    """A transformers-style config as the published heads carry it."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "num_hidden_layers": 1, "rms_norm_eps": EPS,
        "rope_theta": THETA, "vocab_size": VOCAB, "max_position_embeddings": 2048, "hidden_act": "silu", **extra,
    }


def random_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        scale = 1.0 if name.endswith("norm.weight") else 0.2
        base = 1.0 if name.endswith("norm.weight") else 0.0
        out[name] = base + scale * torch.randn(shape, generator=generator)
    return out


def layer_shapes(prefix: str, attention_in: int) -> dict[str, tuple[int, ...]]:
    dim = HIDDEN // HEADS
    return {
        f"{prefix}self_attn.q_proj.weight": (HEADS * dim, attention_in),
        f"{prefix}self_attn.k_proj.weight": (KV_HEADS * dim, attention_in),
        f"{prefix}self_attn.v_proj.weight": (KV_HEADS * dim, attention_in),
        f"{prefix}self_attn.o_proj.weight": (HIDDEN, HEADS * dim),
        f"{prefix}mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN),
        f"{prefix}mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
        f"{prefix}mlp.down_proj.weight": (HIDDEN, INTERMEDIATE),
        f"{prefix}post_attention_layernorm.weight": (HIDDEN,),
    }


def write_eagle1(path: Path, *, embed: bool = True) -> dict[str, torch.Tensor]:
    """A synthetic EAGLE-1 checkpoint: fc over [embedding; feature] with a bias, layers.0.* without
    an input norm, and the embedding copy the published heads carry."""
    shapes = {"fc.weight": (HIDDEN, 2 * HIDDEN), "fc.bias": (HIDDEN,), **layer_shapes("layers.0.", HIDDEN)}
    if embed:
        shapes["embed_tokens.weight"] = (VOCAB, HIDDEN)
    weights = random_weights(shapes, 1)
    path.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(published_config(bias=True)))
    return weights


DRAFT_IDS = torch.tensor(sorted(torch.randperm(VOCAB, generator=torch.Generator().manual_seed(5))[:16].tolist()))


def write_eagle3(path: Path, *, prefix: str = "midlayer.", layer_ids=None) -> dict[str, torch.Tensor]:
    """A synthetic EAGLE-3 checkpoint: fc over three target layers, midlayer.* with hidden_norm and
    input_layernorm over a double-width attention input, norm, lm_head over 16 draft tokens, d2t/t2d."""
    shapes = {
        "fc.weight": (HIDDEN, 3 * HIDDEN), "norm.weight": (HIDDEN,), "lm_head.weight": (len(DRAFT_IDS), HIDDEN),
        f"{prefix}input_layernorm.weight": (HIDDEN,), f"{prefix}hidden_norm.weight": (HIDDEN,),
        **layer_shapes(prefix, 2 * HIDDEN),
    }
    weights = random_weights(shapes, 2)
    weights["d2t"] = DRAFT_IDS - torch.arange(len(DRAFT_IDS))
    t2d = torch.zeros(VOCAB, dtype=torch.bool)
    t2d[DRAFT_IDS] = True
    weights["t2d"] = t2d
    path.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path / "model.safetensors"))
    extra = {"draft_vocab_size": len(DRAFT_IDS), "architectures": ["LlamaForCausalLMEagle3"]}
    if layer_ids is not None:
        extra["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": layer_ids}
    (path / "config.json").write_text(json.dumps(published_config(**extra)))
    return weights


# ----------------------------------------------------------------------------- the published computations
def _llama_parts(weights: dict[str, torch.Tensor], prefix: str, attention_in: int):
    """transformers' llama attention, MLP and rotary embedding holding the checkpoint's weights."""
    config = LlamaConfig(**{k: v for k, v in published_config().items() if k != "architectures"})
    config._attn_implementation = "eager"
    attention = LlamaAttention(config, layer_idx=0)
    for name in ("q", "k", "v"):
        out = getattr(attention, f"{name}_proj").out_features
        setattr(attention, f"{name}_proj", torch.nn.Linear(attention_in, out, bias=False))
    mlp, post = LlamaMLP(config), LlamaRMSNorm(HIDDEN, EPS)
    for module, part in ((attention, "self_attn."), (mlp, "mlp.")):
        module.load_state_dict({k[len(prefix + part):]: v for k, v in weights.items() if k.startswith(prefix + part)})
    post.weight.data = weights[prefix + "post_attention_layernorm.weight"]
    return config, attention, mlp, post


def _attend(config, attention, x):
    n = x.shape[1]
    positions = torch.arange(n).unsqueeze(0)
    cos, sin = LlamaRotaryEmbedding(config)(x, positions)
    causal = torch.full((n, n), float("-inf")).triu(1)[None, None]
    return attention(x, position_embeddings=(cos, sin), attention_mask=causal)[0]


def reference_eagle1(weights, tokens, feature, embedding):
    """EAGLE-1 (cnets1.py): fc(cat(embedding, feature)), a llama layer whose input norm is skipped."""
    config, attention, mlp, post = _llama_parts(weights, "layers.0.", HIDDEN)
    x = torch.nn.functional.linear(torch.cat((embedding[tokens], feature), -1), weights["fc.weight"], weights["fc.bias"])
    x = x + _attend(config, attention, x)
    return x + mlp(post(x))


def reference_eagle3(weights, tokens, layers, embedding, prefix="midlayer."):
    """EAGLE-3 (cnets.py): fc over the fused layers; attention reads [input_layernorm(embedding);
    hidden_norm(feature)], residual from the feature; norm then lm_head; draft id d is target id d + d2t[d]."""
    config, attention, mlp, post = _llama_parts(weights, prefix, 2 * HIDDEN)
    input_norm, hidden_norm, norm = LlamaRMSNorm(HIDDEN, EPS), LlamaRMSNorm(HIDDEN, EPS), LlamaRMSNorm(HIDDEN, EPS)
    input_norm.weight.data, hidden_norm.weight.data = weights[prefix + "input_layernorm.weight"], weights[prefix + "hidden_norm.weight"]
    norm.weight.data = weights["norm.weight"]
    feature = torch.nn.functional.linear(torch.cat(layers, -1), weights["fc.weight"])
    x = feature + _attend(config, attention, torch.cat((input_norm(embedding[tokens]), hidden_norm(feature)), -1))
    x = x + mlp(post(x))
    scores = torch.nn.functional.linear(norm(x), weights["lm_head.weight"])
    full = torch.full((*scores.shape[:-1], VOCAB), float("-inf"))
    full[..., torch.arange(len(weights["d2t"])) + weights["d2t"]] = scores
    return x, full


# ----------------------------------------------------------------------------- tests
def test_a_published_eagle1_checkpoint_computes_what_eagle1_computes(tmp_path):
    weights = write_eagle1(tmp_path / "eagle1")
    loaded = load_head(tmp_path / "eagle1")
    head = loaded.head
    assert head.config.style == "eagle1" and head.config.fc_bias and head.config.own_embedding and not head.config.own_head
    assert loaded.target_fingerprint is None  # published heads record no target
    lm_head = 0.3 * torch.randn(VOCAB, HIDDEN, generator=torch.Generator().manual_seed(3))
    head.attach(torch.zeros(VOCAB, HIDDEN), lm_head)  # the checkpoint's own embedding wins over the target's
    tokens = torch.tensor([[3, 17, 8, 29, 1, 11]])
    feature = torch.randn(1, 6, HIDDEN, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = head(tokens, head.fuse([feature]))
        expected = reference_eagle1(weights, tokens, feature, weights["embed_tokens.weight"])
        assert torch.allclose(got, expected, atol=1e-5)
        assert torch.allclose(head.logits(got), expected @ lm_head.T, atol=1e-5)  # EAGLE-1 scores with the target's head


def test_a_published_eagle3_checkpoint_computes_what_eagle3_computes(tmp_path):
    weights = write_eagle3(tmp_path / "eagle3", layer_ids=[1, 2, 4])
    head = load_head(tmp_path / "eagle3").head
    c = head.config
    assert (c.style, c.fused, c.own_head, c.own_embedding, c.draft_vocab_size, c.layers) == ("eagle3", 3, True, False, 16, (1, 2, 4))
    assert head.draft_ids.tolist() == DRAFT_IDS.tolist()
    embedding = torch.randn(VOCAB, HIDDEN, generator=torch.Generator().manual_seed(6))
    head.attach(embedding)
    tokens = torch.tensor([[3, 17, 8, 29, 1]])
    layers = [torch.randn(1, 5, HIDDEN, generator=torch.Generator().manual_seed(7 + i)) for i in range(3)]
    with torch.no_grad():
        got = head(tokens, head.fuse(layers))
        states, logits = reference_eagle3(weights, tokens, layers, embedding)
        assert torch.allclose(got, states, atol=1e-5)
        assert torch.allclose(head.logits(got), logits, atol=1e-5)
    finite = torch.isfinite(head.logits(got)[0, 0]).nonzero().flatten()
    assert finite.tolist() == DRAFT_IDS.tolist()  # the trimmed vocabulary lands on the target's ids through d2t


def test_an_eagle3_checkpoint_written_with_layers_0_loads_the_same(tmp_path):
    write_eagle3(tmp_path / "a")
    write_eagle3(tmp_path / "b", prefix="layers.0.")
    a, b = load_head(tmp_path / "a").head, load_head(tmp_path / "b").head
    assert b.config.style == "eagle3"
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_eagle3_layers_default_to_low_middle_high_of_the_target(tmp_path):
    write_eagle3(tmp_path / "h")
    config = load_head(tmp_path / "h").head.config
    assert config.layers == () and config.bound(30).layers == (2, 15, 27)
    assert HeadConfig.from_dict({**config.to_dict(), "style": "eagle1", "fused": 1, "own_head": False}).bound(30).layers == (30,)
    with pytest.raises(ConfigurationError, match="target has 3"):
        config.bound(3)


def test_decoding_with_a_cache_equals_one_causal_forward(tmp_path):
    """Slots fed one at a time (and a few at once) through the cache give the causal forward's outputs."""
    write_eagle3(tmp_path / "h")
    head = load_head(tmp_path / "h").head.attach(torch.randn(VOCAB, HIDDEN))
    tokens = torch.tensor([[5, 9, 2, 33, 14, 7, 21]])
    features = torch.randn(1, 7, HIDDEN)
    with torch.no_grad():
        whole = head(tokens, features)
        cache = HeadCache()
        parts = [head(tokens[:, :3], features[:, :3], cache)]
        parts += [head(tokens[:, i:i + 1], features[:, i:i + 1], cache) for i in range(3, 5)]
        parts.append(head(tokens[:, 5:], features[:, 5:], cache))
        assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)
        cache.crop(4)  # rejected slots are overwritten by the next forward
        again = head(tokens[:, 4:], features[:, 4:], cache)
        assert torch.allclose(again, whole[:, 4:], atol=1e-5)


@pytest.mark.parametrize("style", ["eagle1", "eagle3"])
def test_specdec_heads_round_trip_in_bf16_and_float32(tmp_path, style):
    config = HeadConfig(style=style, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_heads=HEADS, num_kv_heads=KV_HEADS,
                        vocab_size=VOCAB, draft_vocab_size=16, target_hidden_size=HIDDEN, own_head=style == "eagle3",
                        layers=(1, 2, 3) if style == "eagle3" else ())
    torch.manual_seed(0)
    head = EagleHead(config)
    head.set_draft_vocabulary(DRAFT_IDS)
    for dtype in (torch.float32, torch.bfloat16):
        saved = save_head(head, tmp_path / str(dtype), target_name="t", target_fingerprint="abc", report={"x": 1}, dtype=dtype)
        names = set(json.loads((saved / "config.json").read_text())) | set()
        assert {"hidden_size", "draft_vocab_size", "specdec"} <= names
        loaded = load_head(saved)
        assert loaded.head.config == config and (loaded.target_name, loaded.target_fingerprint, loaded.report) == ("t", "abc", {"x": 1})
        assert loaded.head.draft_ids.tolist() == DRAFT_IDS.tolist()
        for name, value in head.state_dict().items():
            expected = value if dtype == torch.float32 or not value.is_floating_point() else value.to(dtype).float()
            assert torch.equal(loaded.head.state_dict()[name], expected), name


def test_the_published_layout_is_what_specdec_writes(tmp_path):
    """specdec's EAGLE-3 head carries the published key names, so other engines can read it."""
    config = HeadConfig(style="eagle3", hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_heads=HEADS, num_kv_heads=KV_HEADS,
                        vocab_size=VOCAB, draft_vocab_size=16, target_hidden_size=HIDDEN, own_head=True, layers=(1, 2, 3))
    head = EagleHead(config)
    head.set_draft_vocabulary(DRAFT_IDS)
    save_head(head, tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert {"fc.weight", "midlayer.hidden_norm.weight", "midlayer.self_attn.q_proj.weight", "norm.weight", "lm_head.weight",
            "d2t", "t2d"} <= keys
    assert not any(k.startswith("layer.") for k in keys)


def test_a_pickle_checkpoint_is_refused_with_the_conversion(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(published_config()))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ModelFileError) as error:
        load_head(tmp_path)
    message = str(error.value)
    assert "pickle" in message and "save_file" in message and "torch.load" in message and "\n" not in message


@pytest.mark.parametrize("damage, match", [
    (lambda w, c: w.pop("layers.0.mlp.up_proj.weight"), "lacks layers.0.mlp.up_proj|lacks layer.mlp.up_proj"),
    (lambda w, c: w.update({"layers.0.extra.weight": torch.zeros(2)}), "unknown"),
    (lambda w, c: w.update({"fc.weight": torch.zeros(HIDDEN, 3)}), "fc.weight is"),
    (lambda w, c: c.update({"num_hidden_layers": 2}), "2 decoder layers"),
    (lambda w, c: c.update({"norm_before_fc": True}), "norm_before_fc"),
    (lambda w, c: c.update({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}), "rotary scaling 'llama3'"),
])
def test_heads_that_do_not_fit_are_named(tmp_path, damage, match):
    weights = write_eagle1(tmp_path)
    config = published_config(bias=True)
    damage(weights, config)
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=match):
        load_head(tmp_path)


def test_a_truncated_head_and_a_missing_directory_are_named(tmp_path):
    write_eagle3(tmp_path / "h")
    data = (tmp_path / "h" / "model.safetensors").read_bytes()
    (tmp_path / "h" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_head(tmp_path / "h")
    with pytest.raises(ModelFileError, match="not a directory"):
        load_head(tmp_path / "nothing")


def test_d2t_and_t2d_that_disagree_are_refused(tmp_path):
    weights = write_eagle3(tmp_path)
    weights["t2d"] = torch.zeros(VOCAB, dtype=torch.bool)
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelFileError, match="disagree"):
        load_head(tmp_path)
