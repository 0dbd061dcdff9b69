"""A lean forward for llama-architecture transformers models: same weights, same arithmetic.

transformers' modules are general (hooks, masks built per call, cache objects, output classes), and
on a small model on a CPU their per-call cost is a sizeable part of every step, paid by every
method (measured: docs/design-notes.md). `LeanLlama` runs the same computation as `LlamaModel` with
plain torch calls over the module's own weights: fused q/k/v and gate/up projections with the GEMM
kernel chosen per row count (`projection.py`), rotary tables computed once, and one preallocated
key/value buffer for all layers that forwards write into at their positions, with a row per
sequence: several sequences of different lengths can be fed in one forward (`run_rows`). Cropping
is free (the owner just moves its length); keeping a token tree's path moves only those entries.

It takes the models it can run exactly (`unsupported_reason` says why not otherwise); others keep
the transformers forward. Tests check its hidden states and logits against transformers' own.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Sequence

import attrs
import torch
import torch.nn.functional as F

from .projection import projection

MIN_CAPACITY = 256
DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # weights it runs (the device's own support: `placement`)


def unsupported_reason(model: Any) -> str | None:
    """None when `LeanLlama` reproduces this model's forward, else why it cannot."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama":
        return f"model type {getattr(config, 'model_type', None)!r} is not llama"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if (rope.get("rope_type") or rope.get("type") or "default") != "default":
        return "rotary scaling other than the default"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biases in attention or MLP"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    if next(model.parameters()).dtype not in DTYPES:
        return f"weights in {next(model.parameters()).dtype}, not float32, bfloat16 or float16"
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "layers") or not hasattr(base, "embed_tokens"):
        return "not a LlamaForCausalLM layout"
    return None


class _Layer:
    """One decoder layer's weights, projections fused where they share an input."""

    def __init__(self, layer: Any) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        self.input_norm = layer.input_layernorm.weight.detach()
        self.post_norm = layer.post_attention_layernorm.weight.detach()
        self.qkv = projection(attention.q_proj, attention.k_proj, attention.v_proj)
        self.out = projection(attention.o_proj)
        self.gate_up = projection(mlp.gate_proj, mlp.up_proj)
        self.down = projection(mlp.down_proj)


@attrs.frozen
class RowFeed:
    """One sequence's tokens in a batched forward (`LeanLlama.run_rows`).

    `row` is the sequence's slot in the cache, `start` how many of its cached entries stay (the
    rest are overwritten: cropping a row is feeding it from a smaller `start`). `positions` and
    `allowed` ([n, start + n] booleans) describe a token tree, as in `LeanLlama.run`.
    """

    row: int
    tokens: Sequence[int]
    start: int
    keep: int = 1
    positions: torch.Tensor | None = None
    allowed: torch.Tensor | None = None


class LeanLlama:
    """The decoder stack of a `LlamaForCausalLM`, returning final (normed) hidden states.

    Its cache holds rows: one per sequence. `run` feeds one sequence (row 0, the decoder's);
    `run_rows` feeds several in one forward, each with its own length, positions and mask (ragged).
    Both go through the same layer loop; only how new keys are stored and attended differs
    (`_Chain`, `_Ragged`).
    """

    def __init__(self, model: Any) -> None:
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"LeanLlama cannot run this model: {reason}")
        config = model.config
        self.layers = [_Layer(layer) for layer in model.model.layers]
        self.embed = model.model.embed_tokens.weight.detach()
        self.final_norm = model.model.norm.weight.detach()
        self.device = self.embed.device  # every tensor of a forward lives with the weights
        self.eps = float(config.rms_norm_eps)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        self.intermediate = int(config.intermediate_size)
        # float32: torch's fused norm and rotation; half precision: transformers' order of roundings
        full = self.embed.dtype == torch.float32
        self._norm, self._rotate = (F.rms_norm, torch.addcmul) if full else (_rms_norm_upcast, _rotate_rounded)
        theta = float((getattr(config, "rope_parameters", None) or {}).get("rope_theta", getattr(config, "rope_theta", 10000.0)))
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=self.device).float() / self.head_dim
        self.inv_freq = 1.0 / (theta**exponents)
        self._cos = self._sin = self.embed.new_empty(0, self.head_dim)
        self._keys: torch.Tensor | None = None  # [layers, rows, kv_heads, capacity, head_dim]
        self._values: torch.Tensor | None = None

    # --------------------------------------------------------------------------- state
    def sibling(self) -> "LeanLlama":
        """Another stack over the same weights with an empty cache (for views of a model)."""
        other = copy.copy(self)
        other.reset()
        return other

    def reset(self) -> None:
        self._keys = self._values = None

    def crop(self, length: int) -> None:
        """Nothing to do: the next forward writes over entries past `length`."""

    def keep(self, length: int, positions: Sequence[int], row: int = 0) -> None:
        """Move a row's entries at `positions` to follow its first `length` ones."""
        if self._keys is None or not positions:
            return
        index = torch.tensor(list(positions), dtype=torch.long, device=self.device)
        end = length + len(positions)
        keys, values = self._keys[:, row], self._values[:, row]
        with torch.inference_mode():  # the buffers were made by forwards in inference mode
            keys[:, :, length:end] = keys.index_select(2, index)
            values[:, :, length:end] = values.index_select(2, index)

    def _reserve(self, needed: int, rows: int = 1) -> None:
        """Room for `rows` rows of `needed` entries each (grown by doubling; entries kept)."""
        capacity, held = (0, 0) if self._keys is None else (self._keys.shape[3], self._keys.shape[1])
        if needed <= capacity and rows <= held:
            return
        if needed > capacity:
            capacity = max(needed, 2 * capacity, MIN_CAPACITY)
        shape = (len(self.layers), max(rows, held), self.kv_heads, capacity, self.head_dim)
        keys, values = self.embed.new_zeros(shape), self.embed.new_zeros(shape)  # zeros: a masked entry weighs 0 * value, NaN for garbage
        if self._keys is not None:
            old = self._keys.shape[3]
            keys[:, :held, :, :old], values[:, :held, :, :old] = self._keys, self._values
        self._keys, self._values = keys, values

    def _rotary(self, positions: torch.Tensor, needed: int) -> tuple[torch.Tensor, torch.Tensor]:
        if needed > self._cos.shape[0]:
            size = max(needed, 2 * self._cos.shape[0], MIN_CAPACITY)
            freqs = torch.outer(torch.arange(size, dtype=torch.float32, device=self.device), self.inv_freq)
            angles = torch.cat((freqs, freqs), dim=-1)
            # rotate_half(x) = cat(-x2, x1) = roll(x, half) * (-1 on the first half): fold the sign in
            sign = torch.ones(self.head_dim, device=self.device)
            sign[: self.head_dim // 2] = -1.0
            # computed in float32 and rounded to the weights' dtype, as transformers' rotary embedding
            self._cos, self._sin = angles.cos().to(self.embed.dtype), (angles.sin() * sign).to(self.embed.dtype)
        return self._cos[positions], self._sin[positions]

    # --------------------------------------------------------------------------- forward
    def run(
        self,
        tokens: Sequence[int],
        start: int,
        keep: int,
        positions: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
        causal_rows: int = 0,
        features: Sequence[int] = (),
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Feed `tokens` after `start` cached entries of row 0; normed hidden states of the last
        `keep`, and the hidden states of the `features` layers at every token fed
        (`FeatureModel`; the forward's own tensors, not copies).

        `positions` (default start, start+1, ...) and `allowed` ([n, start+n] booleans, default
        causal) describe a token tree; entries are written at slots start..start+n-1 either way.
        With `causal_rows` (on an empty cache only) the first rows are a plain causal chain and
        `allowed` holds the rows after it (`tree_attention`).
        """
        n = len(tokens)
        end = start + n
        if causal_rows and (start or allowed is None or allowed.shape[0] != n - causal_rows):
            raise ValueError("causal_rows needs an empty cache and a mask for the rows after them")
        if causal_rows == n:  # the whole tree is a chain
            allowed, causal_rows = None, 0
        if positions is None:
            positions = torch.arange(start, end, device=self.device)
            if n > 1 and allowed is None and start > 0:
                allowed = torch.ones(n, end, dtype=torch.bool, device=self.device).tril(start)
        self._reserve(end)
        ids = torch.tensor(list(tokens), dtype=torch.long, device=self.device)
        # a tree's positions stay below `end` (depth <= n): no device read
        x, states = self._layers(ids, positions, end, _Chain(self, start, end, allowed, causal_rows), features)
        norm, shape, eps = self._norm, x.shape[-1:], self.eps
        if len(self.layers) in states:  # the final output at every position
            states[len(self.layers)] = norm(x, shape, self.final_norm, eps)
            return states[len(self.layers)][-keep:], tuple(states[layer] for layer in features)
        return norm(x[-keep:], shape, self.final_norm, eps), tuple(states[layer] for layer in features)

    def run_rows(
        self, feeds: Sequence[RowFeed], features: Sequence[int] = ()
    ) -> list[tuple[torch.Tensor, tuple[torch.Tensor, ...]]]:
        """Feed several sequences in one forward: per feed, in order, the normed hidden states of its
        last `keep` tokens and its `features` layers' states at every token it fed (as `run`).

        The feeds' tokens go through the layers packed (a row's projections cost its own tokens
        only); attention alone lays them out padded to the longest feed, where a padding query
        attends to one cached entry and its output is dropped, so a row's output depends on its own
        tokens and cache only (bit for bit in float32: its products are row by row, its attention
        batch entry by batch entry).
        """
        if len({feed.row for feed in feeds}) != len(feeds):
            raise ValueError("each row can be fed once per forward")
        lengths = [len(feed.tokens) for feed in feeds]
        width = max(lengths)
        needed = max(feed.start for feed in feeds) + width
        self._reserve(needed, max(feed.row for feed in feeds) + 1)
        ids = torch.tensor([token for feed in feeds for token in feed.tokens], dtype=torch.long, device=self.device)
        positions = torch.cat([_feed_positions(feed, self.device) for feed in feeds])
        x, states = self._layers(ids, positions, needed, _Ragged(self, feeds, width), features)
        ends = list(itertools.accumulate(lengths))
        last = torch.cat([x[end - feed.keep : end] for feed, end in zip(feeds, ends)])
        last = self._norm(last, last.shape[-1:], self.final_norm, self.eps).split([feed.keep for feed in feeds])
        if len(self.layers) in states:
            states[len(self.layers)] = self._norm(x, x.shape[-1:], self.final_norm, self.eps)
        per_row = {layer: state.split(lengths) for layer, state in states.items()}
        return [(last[b], tuple(per_row[layer][b] for layer in features)) for b in range(len(feeds))]

    def _layers(
        self, ids: torch.Tensor, positions: torch.Tensor, needed: int, layout: "_Chain | _Ragged", features: Sequence[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The decoder layers over the fed tokens (one row per token, all sequences stacked): the
        residual stream before the final norm, and the `features` layers' states."""
        cos, sin = self._rotary(positions, needed)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [m, 1, dim]: broadcast over heads
        x = self.embed[ids]
        m = x.shape[0]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        q_width, k_width = heads * dim, kv_heads * dim
        half, hidden_shape, eps = dim // 2, x.shape[-1:], self.eps
        norm, rotate = self._norm, self._rotate
        wanted, states = set(features), {}
        for index, layer in enumerate(self.layers):
            if index in wanted:
                states[index] = x  # the residual stream after `index` layers (x is rebound, never written)
            qkv = layer.qkv(norm(x, hidden_shape, layer.input_norm, eps))
            # q and k rotated together: x * cos + rotate_half(x) * sin, rotate_half as a roll
            # with the sign folded into the sine table
            qk = qkv[:, : q_width + k_width].view(m, heads + kv_heads, dim)
            qk = rotate(qk * cos, qk.roll(half, dims=-1), sin)
            v = qkv[:, q_width + k_width :].view(m, kv_heads, dim)
            x = x + layer.out(layout.attend(self._keys[index], self._values[index], qk, v))
            gate, up = layer.gate_up(norm(x, hidden_shape, layer.post_norm, eps)).split(self.intermediate, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        if len(self.layers) in wanted:
            states[len(self.layers)] = x  # normed by the caller
        return x, states


class _Chain:
    """One sequence in cache row 0: keys and values written at slots start..end-1, attention
    causal (a fresh prompt, SDPA's fused path), through `allowed`, or a causal chain followed by
    masked tree nodes (`causal_rows`)."""

    def __init__(self, stack: LeanLlama, start: int, end: int, allowed: torch.Tensor | None, causal_rows: int) -> None:
        self.start, self.end, self.allowed, self.causal_rows = start, end, allowed, causal_rows
        self.causal = end - start > 1 and allowed is None
        self.heads, self.grouped = stack.heads, stack.heads != stack.kv_heads

    def attend(self, keys: torch.Tensor, values: torch.Tensor, qk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        start, end, heads, grouped, causal_rows, allowed = self.start, self.end, self.heads, self.grouped, self.causal_rows, self.allowed
        keys, values = keys[0], values[0]
        keys[:, start:end] = qk[:, heads:].transpose(0, 1)
        values[:, start:end] = v.transpose(0, 1)
        queries, seen = qk[:, :heads].transpose(0, 1).unsqueeze(0), (keys[:, :end].unsqueeze(0), values[:, :end].unsqueeze(0))
        if causal_rows:  # the chain causally (SDPA's fused kernel), the nodes after it masked
            chain = (keys[:, :causal_rows].unsqueeze(0), values[:, :causal_rows].unsqueeze(0))
            head = F.scaled_dot_product_attention(queries[:, :, :causal_rows], *chain, is_causal=True, enable_gqa=grouped)
            tail = F.scaled_dot_product_attention(queries[:, :, causal_rows:], *seen, attn_mask=allowed, enable_gqa=grouped)
            attended = torch.cat((head, tail), dim=2)
        else:
            attended = F.scaled_dot_product_attention(queries, *seen, attn_mask=allowed, is_causal=self.causal, enable_gqa=grouped)
        return attended[0].transpose(0, 1).reshape(end - start, -1)


class _Ragged:
    """Several sequences, each in its cache row, their tokens packed: keys and values scattered to
    each row's slots; for attention the queries are laid out padded to `width` tokens per row, one
    batched attention with a mask per row, and the real tokens' outputs packed again."""

    def __init__(self, stack: LeanLlama, feeds: Sequence[RowFeed], width: int) -> None:
        device, batch = stack.device, len(feeds)
        self.heads, self.grouped, self.batch, self.width = stack.heads, stack.heads != stack.kv_heads, batch, width
        lengths = torch.tensor([len(feed.tokens) for feed in feeds], dtype=torch.long, device=device)
        rows = torch.tensor([feed.row for feed in feeds], dtype=torch.long, device=device)
        starts = torch.tensor([feed.start for feed in feeds], dtype=torch.long, device=device)
        offsets = torch.arange(width, device=device)
        real = offsets[None, :] < lengths[:, None]  # [batch, width]: which padded places hold a token
        # the padded places of the packed tokens (None: every feed is `width` long, nothing to pad)
        self.pack = None if bool(real.all()) else real.flatten().nonzero().squeeze(1)
        self.row_index = rows.repeat_interleave(lengths)
        self.slot_index = (starts[:, None] + offsets[None, :])[real]
        self.seen = max(feed.start + len(feed.tokens) for feed in feeds)
        self.rows = None if [feed.row for feed in feeds] == list(range(stack._keys.shape[1])) else rows
        # causal by default: new token i of a row sees its row's slots up to start + i
        mask = torch.arange(self.seen, device=device)[None, None, :] <= (starts[:, None] + offsets[None, :])[:, :, None]
        for b, feed in enumerate(feeds):
            n = len(feed.tokens)
            if feed.allowed is not None:
                mask[b, :n, : feed.start + n] = feed.allowed
            mask[b, n:] = False  # padding: one cached entry, so that softmax has something to weigh
            mask[b, n:, 0] = True
        self.mask = mask.unsqueeze(1)  # [batch, 1, width, seen]: broadcast over heads

    def attend(self, keys: torch.Tensor, values: torch.Tensor, qk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        heads, batch, width, pack = self.heads, self.batch, self.width, self.pack
        keys[self.row_index, :, self.slot_index] = qk[:, heads:]
        values[self.row_index, :, self.slot_index] = v
        seen = keys[:, :, : self.seen], values[:, :, : self.seen]
        if self.rows is not None:  # some rows of the cache only
            seen = seen[0].index_select(0, self.rows), seen[1].index_select(0, self.rows)
        queries = qk[:, :heads]
        if pack is not None:
            queries = queries.new_zeros(batch * width, *queries.shape[1:]).index_copy_(0, pack, queries)
        queries = queries.view(batch, width, heads, -1).transpose(1, 2)
        attended = F.scaled_dot_product_attention(queries, *seen, attn_mask=self.mask, enable_gqa=self.grouped)
        attended = attended.transpose(1, 2).reshape(batch * width, -1)
        return attended if pack is None else attended.index_select(0, pack)


def _feed_positions(feed: RowFeed, device: torch.device) -> torch.Tensor:
    """A feed's positions: start, start+1, ... unless given (a tree's depths)."""
    n = len(feed.tokens)
    return feed.positions.to(device) if feed.positions is not None else torch.arange(feed.start, feed.start + n, device=device)


def _rms_norm_upcast(x: torch.Tensor, shape: Sequence[int], weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' `LlamaRMSNorm` in half precision: normalised in float32, rounded, then scaled
    (`F.rms_norm` scales before rounding: a bit off in bfloat16)."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate_rounded(rotated_cos: torch.Tensor, rolled: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """q * cos + rotate_half(q) * sin with each product rounded, as transformers computes it
    (`torch.addcmul` rounds once, which in half precision is another result)."""
    return rotated_cos + rolled * sin
