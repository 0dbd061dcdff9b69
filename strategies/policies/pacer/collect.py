"""Training data for the pre-verifier: every position's greedy acceptance, by teacher forcing.

Along the target's own greedy continuation of a prompt, one forward of each model over the whole
sequence gives, at every position, the draft's hidden state and distribution and the target's
argmax. A real greedy round that reached a position with all earlier draft tokens accepted saw
exactly this context, so `accepted = (draft argmax == target argmax)` is that round's outcome and
the features are the ones the policy would have seen. Rounds starting anywhere are rebuilt later
from these per-position outcomes (strategies/policies/pacer/train.py); nothing here depends on a policy.

The continuation is generated in batches (left padding), by default with a bfloat16 copy of the
target because that is several times faster on CPUs with bf16 support; the labels always come from
the full-precision target's own forward over the resulting text, so they are exact for the contexts
used, which are target-like text (a bf16 argmax differs from the float32 one at a few positions).

The result is cached with safetensors, so training can be repeated without the models.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import attrs
import torch

from specdec.errors import ConfigurationError
from .drafts import draft_fingerprint
from .network import LOG_PROB_FLOOR

CACHE_FORMAT = "specdec-pacer-data/1"


@attrs.frozen
class PacerData:
    """Per-position features and labels of several sequences, stored contiguously in order."""

    hidden: torch.Tensor  # [N, D] float16: the draft's final hidden state before drafting the token
    scalars: torch.Tensor  # [N, len(SCALARS)] float32 (see model.scalar_features)
    draft_token: torch.Tensor  # [N] int64: the draft's argmax (the greedy draft token)
    target_token: torch.Tensor  # [N] int64: the target's argmax on the same context
    soft: torch.Tensor  # [N] float32: sum_x min(p, q) at temperature 1 (sampling acceptance)
    sequence: torch.Tensor  # [N] int64: which sequence each position belongs to
    meta: dict[str, Any] = attrs.field(factory=dict, eq=False)

    @property
    def accepted(self) -> torch.Tensor:
        return self.draft_token == self.target_token

    @property
    def sequences(self) -> int:
        return int(self.sequence.max()) + 1 if self.sequence.numel() else 0

    def __len__(self) -> int:
        return int(self.sequence.numel())

    def select(self, sequences: Sequence[int]) -> "PacerData":
        """The positions of some sequences (renumbered 0..len-1 in the given order)."""
        parts = [torch.nonzero(self.sequence == s).flatten() for s in sequences]
        index = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
        renumber = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)]) if parts else index
        return PacerData(self.hidden[index], self.scalars[index], self.draft_token[index], self.target_token[index],
                         self.soft[index], renumber.long(), dict(self.meta))

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: getattr(self, name).contiguous() for name in ("hidden", "scalars", "draft_token", "target_token", "soft", "sequence")}
        save_file(tensors, str(path), metadata={"format": CACHE_FORMAT, "meta": json.dumps(self.meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PacerData":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != CACHE_FORMAT:
                raise ConfigurationError(f"{path} is not a PACER feature cache (format {metadata.get('format')!r})")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        return cls(meta=json.loads(metadata.get("meta", "{}")), **tensors)


def prompts_digest(prompts: Iterable[str], max_new_tokens: int, chat: bool) -> str:
    digest = hashlib.sha256(json.dumps([list(prompts), max_new_tokens, chat]).encode())
    return digest.hexdigest()[:16]


def encode_prompts(model: Any, prompts: Sequence[str], chat: bool) -> list[list[int]]:
    codec = model.codec
    if codec is None:
        raise ConfigurationError(f"the target {model.name!r} has no tokenizer")
    if chat and getattr(getattr(codec, "tokenizer", None), "chat_template", None):
        return [list(codec.apply_chat_template(p)) for p in prompts]
    return [list(codec.encode(p)) for p in prompts]


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def generate_continuations(
    model: Any, prompts: list[list[int]], max_new_tokens: int, *, batch_size: int = 16,
    dtype: torch.dtype = torch.bfloat16, progress: bool = True, temperature: float = 0.0, top_p: float | None = None,
) -> list[list[int]]:
    """The target's greedy continuation of every prompt (cut after the first end-of-sequence token);
    with `temperature` > 0 a sample instead (from torch's generator: seed it for a repeatable run)."""
    from tqdm.auto import tqdm

    hf = model.model
    generator = hf if dtype == next(hf.parameters()).dtype else copy.deepcopy(hf).to(dtype)
    eos = sorted(model.eos_token_ids)
    pad = eos[0] if eos else 0
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    out: list[list[int]] = [[] for _ in prompts]
    bar = tqdm(total=len(prompts), desc="generating continuations", unit="seq", disable=not progress)
    for batch in _batches(order, batch_size):
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]):] = 1
        with torch.inference_mode():
            generated = generator.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                pad_token_id=pad, eos_token_id=eos or None, temperature=temperature or None, top_p=top_p, top_k=None,
            )
        for row, i in enumerate(batch):
            tokens = generated[row, width:].tolist()
            cut = next((j + 1 for j, t in enumerate(tokens) if t in eos), len(tokens))
            out[i] = tokens[:cut]
        bar.update(len(batch))
    bar.close()
    return out


def _head(model: Any) -> torch.nn.Module:
    return model.model.get_output_embeddings()


def _base(model: Any) -> torch.nn.Module:
    hf = model.model
    return getattr(hf, hf.base_model_prefix)


def teacher_force(
    target: Any, draft: Any, prompts: list[list[int]], continuations: list[list[int]], *,
    batch_size: int = 8, progress: bool = True,
) -> PacerData:
    """Features and labels at every continuation position from one forward of each model."""
    from tqdm.auto import tqdm

    keep = [i for i, c in enumerate(continuations) if c]
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("hidden", "scalars", "draft_token", "target_token", "soft", "sequence")}
    bar = tqdm(total=len(keep), desc="teacher forcing", unit="seq", disable=not progress)
    for batch in _batches(keep, batch_size):
        full = [prompts[i] + continuations[i] for i in batch]
        width = max(len(f) for f in full)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, f in enumerate(full):  # right padding: the real tokens keep positions 0..len-1
            ids[row, : len(f)] = torch.tensor(f)
            mask[row, : len(f)] = 1
        with torch.inference_mode():
            t_states = _base(target)(input_ids=ids, attention_mask=mask).last_hidden_state
            d_states = _base(draft)(input_ids=ids, attention_mask=mask).last_hidden_state
            for row, i in enumerate(batch):
                start, count = len(prompts[i]) - 1, len(continuations[i])
                rows = slice(start, start + count)  # the state before each continuation token
                p_logits = _head(target)(t_states[row, rows]).float()
                q_logits = _head(draft)(d_states[row, rows]).float()
                _append(parts, d_states[row, rows].float(), q_logits, p_logits, len(parts["sequence"]))
        bar.update(len(batch))
    bar.close()
    if not parts["sequence"]:
        raise ConfigurationError("no training positions: every continuation was empty")
    return PacerData(**{k: torch.cat(v) for k, v in parts.items()})


def _append(parts: dict[str, list[torch.Tensor]], hidden: torch.Tensor, q_logits: torch.Tensor,
            p_logits: torch.Tensor, sequence: int) -> None:
    """Per-position features computed as specdec/features.py computes them at decoding time."""
    log_q = torch.log_softmax(q_logits, dim=-1)
    q = log_q.exp()
    entropy = (-(q * log_q.nan_to_num(neginf=0.0)).sum(-1)).clamp(min=0.0)
    top = torch.topk(q, 2, dim=-1)
    top_prob = top.values[:, 0]
    margin = top.values[:, 0] - top.values[:, 1]
    log_prob = top_prob.log().clamp(min=LOG_PROB_FLOOR)  # greedy: the drafted token is the argmax
    p = torch.softmax(p_logits, dim=-1)
    parts["hidden"].append(hidden.half())
    parts["scalars"].append(torch.stack([log_prob, entropy, margin, top_prob], dim=-1))
    parts["draft_token"].append(top.indices[:, 0])
    parts["target_token"].append(p_logits.argmax(-1))
    parts["soft"].append(torch.minimum(p, q).sum(-1))
    parts["sequence"].append(torch.full((len(hidden),), sequence, dtype=torch.long))


def measure_costs(target: Any, draft: Any, context: Sequence[int], max_width: int, *, repeats: int = 5) -> dict[str, Any]:
    """Seconds of a draft step and of target forwards over 1..max_width tokens, on this machine."""
    from specdec.timing import sweep_seconds

    widths = sorted({w for w in (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 33) if w <= max_width} | {max_width})
    swept = sweep_seconds({"target": (target, widths), "draft": (draft, [1])}, context, repeats)
    measured = dict(zip(widths, swept["target"]))
    table = []
    for w in range(1, max_width + 1):  # linear interpolation between measured widths
        lo = max(x for x in widths if x <= w)
        hi = min(x for x in widths if x >= w)
        frac = 0.0 if hi == lo else (w - lo) / (hi - lo)
        table.append(measured[lo] + frac * (measured[hi] - measured[lo]))
    return {"draft": swept["draft"][0], "target": table, "context": len(context)}


def collect(
    target: Any, draft: Any, prompts: Sequence[str], *, max_new_tokens: int = 96, chat: bool = True,
    batch_size: int = 16, generation_dtype: torch.dtype = torch.bfloat16, max_draft: int = 24,
    progress: bool = True, measure: bool = True, cost_draft: Any = None,
) -> PacerData:
    """Run both models over the prompts and return (uncached) training data with provenance.

    `cost_draft` (default: `draft`) is the draft whose step is timed for the threshold tuning: an
    int8 copy is timed that way, while the features come from `draft`, because an int8 draft
    teacher-forced over whole padded batches quantizes its activations with one scale for the
    batch and is not the draft that decodes one token at a time.
    """
    if target.vocab_size != draft.vocab_size:
        raise ConfigurationError(f"target and draft vocabularies differ ({target.vocab_size} vs {draft.vocab_size})")
    ids = encode_prompts(target, list(prompts), chat)
    continuations = generate_continuations(target, ids, max_new_tokens, batch_size=batch_size, dtype=generation_dtype, progress=progress)
    data = teacher_force(target, draft, ids, continuations, batch_size=max(1, batch_size // 2), progress=progress)
    meta: dict[str, Any] = {
        "draft_name": Path(str(draft.name)).name,
        "draft_fingerprint": draft_fingerprint(draft),
        "target_name": Path(str(target.name)).name,
        "hidden_size": int(data.hidden.shape[1]),
        "vocab_size": int(draft.vocab_size),
        "prompts": len(prompts),
        "digest": prompts_digest(prompts, max_new_tokens, chat),
        "max_new_tokens": max_new_tokens,
        "chat": chat,
    }
    if measure:
        longest = max(range(len(ids)), key=lambda i: len(ids[i]) + len(continuations[i]))
        context = (ids[longest] + continuations[longest])[: max(8, len(ids[longest]) + len(continuations[longest]) // 2)]
        timed = cost_draft if cost_draft is not None else draft
        meta["costs"] = measure_costs(target, timed, context, max_draft + 1)
        meta["cost_draft"] = Path(str(timed.name)).name
    return attrs.evolve(data, meta=meta)
