"""A tiny GGUF model for the conversion-cache tests: the stories260K target written as GGUF.

Converting the shipped GGUF target takes about 15 s and writes 517 MB; this one converts in a
second and writes 1 MB, so several first runs and a killed one fit in a test. Its tensors are
float32 and laid out as llama.cpp's converter writes them (q and k rows permuted), so the
converted copy is the stories260K target itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.plugin_tools import TINY_TARGET, tiny

NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}  # fmt: skip


def _permuted(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order (transformers' GGUF reader undoes it)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(directory: Path, name: str = "stories260K.gguf") -> Path:
    """`directory`/`name`: the tiny target with its tokenizer, as a GGUF file."""
    import gguf
    from safetensors.numpy import load_file

    source = Path(tiny(TINY_TARGET))
    config = json.loads((source / "config.json").read_text())
    vocab = json.loads((source / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    kinds = [2 if i == 0 else 3 if i < 3 else 6 if t.startswith("<0x") else 1 for i, t in enumerate(tokens)]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(i) for i in range(len(tokens))])
    writer.add_token_types(kinds)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    for key, value in load_file(str(source / "model.safetensors")).items():
        value = value.astype(np.float32)
        if key == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", value)
        elif key == "model.norm.weight":
            writer.add_tensor("output_norm.weight", value)
        elif key.startswith("model.layers."):
            _, _, layer, *rest = key.split(".")
            part = ".".join(rest[:-1])
            if part == "self_attn.q_proj":
                value = _permuted(value, config["num_attention_heads"])
            elif part == "self_attn.k_proj":
                value = _permuted(value, config["num_key_value_heads"])
            writer.add_tensor(f"blk.{layer}.{NAMES[part]}.weight", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
