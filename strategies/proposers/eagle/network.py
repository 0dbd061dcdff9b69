"""The head: one decoder layer over [token embedding; target feature], scored by an LM head.

`EagleHead` runs both designs of `config.py` with the parameter names of the published
checkpoints (`fc`, `self_attn.q_proj`, `mlp.gate_proj`, `hidden_norm`, `norm`, `lm_head`), so
loading one is a rename of its decoder layer's prefix (`checkpoint.py`). The token embedding and,
for EAGLE-1, the LM head are the target's own unless a checkpoint carries them; they are attached,
not trained or saved. A trimmed vocabulary (`draft_ids`, ascending target ids) scores only those
tokens; `logits` spreads their scores over the target's vocabulary with -inf elsewhere, so a draft
from it is an ordinary distribution over the target's tokens.

One forward serves decoding (one sequence, a `HeadCache` of past keys and values, positions
continuing from the cache) and training (a batch of right-padded sequences from position 0,
causal attention: no real position attends to padding).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import HeadConfig


class _Norm(nn.Module):
    """RMSNorm with a learnt scale (`weight`, as the checkpoints name it)."""

    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class _Attention(nn.Module):
    def __init__(self, config: HeadConfig, width: int) -> None:
        super().__init__()
        dim = config.dim
        self.q_proj = nn.Linear(width, config.num_heads * dim, bias=False)
        self.k_proj = nn.Linear(width, config.num_kv_heads * dim, bias=False)
        self.v_proj = nn.Linear(width, config.num_kv_heads * dim, bias=False)
        self.o_proj = nn.Linear(config.num_heads * dim, config.hidden_size, bias=False)


class _Mlp(nn.Module):
    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _Layer(nn.Module):
    """The decoder layer: EAGLE-1's reads the projected input as is, EAGLE-3's reads
    [input_layernorm(embedding); hidden_norm(feature)] (twice the width)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        eagle3 = config.style == "eagle3"
        self.self_attn = _Attention(config, 2 * config.hidden_size if eagle3 else config.hidden_size)
        self.mlp = _Mlp(config)
        self.post_attention_layernorm = _Norm(config.hidden_size, config.rms_norm_eps)
        if eagle3:
            self.input_layernorm = _Norm(config.hidden_size, config.rms_norm_eps)
            self.hidden_norm = _Norm(config.hidden_size, config.rms_norm_eps)


class HeadCache:
    """Keys and values of the head's past positions for one sequence; cropping moves `length`."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None  # [kv_heads, capacity, dim]
        self.values: torch.Tensor | None = None
        self.length = 0

    def crop(self, length: int) -> None:
        self.length = min(self.length, length)

    def reset(self) -> None:
        self.keys = self.values = None
        self.length = 0

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write [kv_heads, n, dim] after the cached entries; return everything cached."""
        start, n = self.length, keys.shape[1]
        end = start + n
        if self.keys is None or self.keys.shape[1] < end or self.keys.dtype != keys.dtype:
            capacity = max(end, 2 * (0 if self.keys is None else self.keys.shape[1]), 64)
            grown_k = keys.new_empty(keys.shape[0], capacity, keys.shape[2])
            grown_v = values.new_empty(grown_k.shape)
            if self.keys is not None and start:
                grown_k[:, :start], grown_v[:, :start] = self.keys[:, :start], self.values[:, :start]
            self.keys, self.values = grown_k, grown_v
        self.keys[:, start:end], self.values[:, start:end] = keys, values
        self.length = end
        return self.keys[:, :end], self.values[:, :end]


class EagleHead(nn.Module):
    """A feature-level draft head (see the module docstring and `HeadConfig`)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        width = config.fused * config.target_hidden_size
        fc_in = width + config.hidden_size if config.style == "eagle1" else width
        self.fc = nn.Linear(fc_in, config.hidden_size, bias=config.fc_bias)
        self.layer = _Layer(config)
        if config.style == "eagle3":
            self.norm = _Norm(config.hidden_size, config.rms_norm_eps)
        if config.own_head:
            self.lm_head = nn.Linear(config.hidden_size, config.draft_vocab_size, bias=False)
        if config.own_embedding:  # a frozen copy of the target's, as published heads carry it
            self.embed_tokens = nn.Module()
            self.embed_tokens.register_buffer("weight", torch.zeros(config.vocab_size, config.hidden_size))
        self.register_buffer("draft_ids", torch.arange(config.draft_vocab_size))
        dim = config.dim
        # rotary frequencies in float64 (not a buffer: casting the head's weights leaves them alone)
        self.inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        self._embedding: torch.Tensor | None = None  # the target's, when the checkpoint has none
        self._lent_head: torch.Tensor | None = None  # the target's LM head (EAGLE-1)
        self._rows: torch.Tensor | None = None  # its rows of the draft vocabulary, taken once

    # ------------------------------------------------------------------ wiring
    def attach(self, embedding: torch.Tensor, lm_head: torch.Tensor | None = None) -> "EagleHead":
        """Lend the target's token embedding [vocab, hidden] and LM head weight [vocab, hidden]
        (used unless the checkpoint carries its own)."""
        c = self.config
        if tuple(embedding.shape) != (c.vocab_size, c.hidden_size) and not c.own_embedding:
            raise ValueError(f"the target's embedding is {tuple(embedding.shape)}, the head needs ({c.vocab_size}, {c.hidden_size})")
        self._embedding = embedding
        if not c.own_head:
            if lm_head is None or tuple(lm_head.shape) != (c.vocab_size, c.hidden_size):
                shape = None if lm_head is None else tuple(lm_head.shape)
                raise ValueError(f"the head scores with the target's LM head ({c.vocab_size}, {c.hidden_size}), got {shape}")
            self._lent_head, self._rows = lm_head, None
        return self

    def set_draft_vocabulary(self, target_ids: torch.Tensor) -> None:
        """The target ids the head scores, ascending (a trimmed vocabulary)."""
        ids = torch.as_tensor(target_ids, dtype=torch.long).flatten()
        c = self.config
        if ids.numel() != c.draft_vocab_size or (ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c.vocab_size)):
            raise ValueError(f"the draft vocabulary needs {c.draft_vocab_size} ids below {c.vocab_size}")
        if ids.numel() > 1 and not bool((ids[1:] > ids[:-1]).all()):
            raise ValueError("the draft vocabulary's ids must be distinct and ascending")
        self.draft_ids.copy_(ids)
        self._rows = None

    def embedding(self) -> torch.Tensor:
        if self.config.own_embedding:
            return self.embed_tokens.weight
        if self._embedding is None:
            raise RuntimeError("attach the target's embedding first (EagleHead.attach)")
        return self._embedding

    # ------------------------------------------------------------------ the computation
    def fuse(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        """The head's feature input from the target's hidden states of `config.layers`
        ([..., target_hidden] each): EAGLE-1 reads the final state as is, EAGLE-3 projects the
        concatenation with `fc`."""
        if len(layers) != self.config.fused:
            raise ValueError(f"the head reads {self.config.fused} target layers, got {len(layers)}")
        dtype = self.fc.weight.dtype
        if self.config.style == "eagle1":
            return layers[0].to(dtype)
        return self.fc(torch.cat([layer.to(dtype) for layer in layers], dim=-1))

    def forward(
        self, tokens: torch.Tensor, features: torch.Tensor, cache: HeadCache | None = None
    ) -> torch.Tensor:
        """Output states [batch, n, hidden] for `tokens` [batch, n] paired with `features`
        [batch, n, hidden] (from `fuse`, or the head's own earlier outputs). With `cache` (batch
        1) the positions follow the cached ones; without, they start at 0 and attention is causal."""
        c = self.config
        batch, n = tokens.shape
        embedded = F.embedding(tokens, self.embedding()).to(features.dtype)
        layer = self.layer
        if c.style == "eagle1":
            x = self.fc(torch.cat((embedded, features), dim=-1))
            residual, attention_input = x, x
        else:
            residual = features
            attention_input = torch.cat((layer.input_layernorm(embedded), layer.hidden_norm(features)), dim=-1)
        start = cache.length if cache is not None else 0
        x = residual + self._attend(attention_input, start, cache)
        return x + layer.mlp(layer.post_attention_layernorm(x))

    def _attend(self, x: torch.Tensor, start: int, cache: HeadCache | None) -> torch.Tensor:
        c, attention = self.config, self.layer.self_attn
        batch, n, _ = x.shape
        dim = c.dim
        q = attention.q_proj(x).view(batch, n, c.num_heads, dim).transpose(1, 2)
        k = attention.k_proj(x).view(batch, n, c.num_kv_heads, dim).transpose(1, 2)
        v = attention.v_proj(x).view(batch, n, c.num_kv_heads, dim).transpose(1, 2)
        cos, sin = self._rotary(start, n, x.dtype)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        mask, causal = None, n > 1
        if cache is not None:
            if batch != 1:
                raise ValueError("a head cache holds one sequence")
            keys, values = cache.append(k[0], v[0])
            k, v = keys.unsqueeze(0), values.unsqueeze(0)
            if n > 1 and start:
                mask, causal = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(start), False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=c.num_heads != c.num_kv_heads)
        return attention.o_proj(out.transpose(1, 2).reshape(batch, n, c.num_heads * dim))

    def _rotary(self, start: int, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(start, start + n, dtype=torch.float64, device=self.inv_freq.device)
        angles = torch.outer(positions, self.inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def scores(self, states: torch.Tensor) -> torch.Tensor:
        """Scores [..., draft_vocab] of the head's outputs (EAGLE-1: the target's LM head rows;
        EAGLE-3: its own norm and LM head)."""
        if self.config.style == "eagle3":
            states = self.norm(states)
        if self.config.own_head:
            return self.lm_head(states)
        if self._rows is None:
            if self._lent_head is None:
                raise RuntimeError("attach the target's LM head first (EagleHead.attach)")
            rows = self._lent_head[self.draft_ids] if self.config.trimmed else self._lent_head
            self._rows = rows.detach().to(self.fc.weight.dtype)
        return F.linear(states, self._rows)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """Logits over the target's vocabulary (-inf outside a trimmed vocabulary), at least float32."""
        scores = self.scores(states)
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()
        if not self.config.trimmed:
            return scores
        full = scores.new_full((*scores.shape[:-1], self.config.vocab_size), float("-inf"))
        full[..., self.draft_ids] = scores
        return full


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (x * cos + rotate_half(x) * sin), as the llama layers apply it."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
