"""A prompt as token ids, from whatever a caller holds: text, chat messages or transformers' inputs.

transformers users pass `**tokenizer(text, return_tensors="pt")` (`input_ids` and
`attention_mask`, shape [1, n]) or a list of chat messages; specdec decodes one sequence of token
ids. Left padding (mask 0 before the first real token) is dropped, since a single sequence needs
none; any other padding, or a tensor of several rows, is refused rather than decoded wrongly. A
batch is a list of prompts (`is_batch`), each read on its own.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence, Union

import torch

from specdec.errors import InputError
from specdec.integrations.base import ChatCodec, TextCodec

Prompt = Union[str, Sequence[int], Sequence[Mapping[str, Any]], torch.Tensor]  # what `Decoder.generate` takes


def is_messages(prompt: Any) -> bool:
    """A chat: a non-empty list of {"role": ..., "content": ...} mappings."""
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(isinstance(m, Mapping) for m in prompt)


def is_batch(prompt: Any) -> bool:
    """A list of prompts rather than one: a list, not chat messages, holding text or sequences
    (a list of scalars is one prompt's token ids; an empty list is a batch of no prompts)."""
    if not isinstance(prompt, list) or is_messages(prompt):
        return False
    return not prompt or any(isinstance(p, (str, list, tuple)) or isinstance(p, torch.Tensor) and p.dim() > 0 for p in prompt)


def batch_prompts(prompts: list[Any]) -> list[Any]:
    """The prompts of a batch, each text, chat messages or token ids; a one-line error otherwise."""
    if not prompts:
        raise InputError("no prompts: the list of prompts is empty")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, (str, list, tuple, torch.Tensor)):
            raise InputError(f"prompt {i} of the list is not a prompt (text, chat messages or token ids): {type(prompt).__name__} {_short(prompt)}")
    return prompts


def prompt_ids(
    codec: TextCodec | None,
    vocab_size: int,
    prompt: Any = None,
    *,
    input_ids: Any = None,
    attention_mask: Any = None,
    chat: bool = False,
) -> list[int]:
    """The prompt's token ids, checked against the vocabulary."""
    if input_ids is not None:
        if prompt is not None:
            raise InputError("give the prompt once: either as the first argument or as input_ids=")
        prompt = input_ids
    elif attention_mask is not None:
        raise InputError("attention_mask= goes with input_ids=")
    if prompt is None:
        raise InputError("no prompt: pass text, chat messages or input_ids=")
    if isinstance(prompt, str) or is_messages(prompt):
        if attention_mask is not None:
            raise InputError("attention_mask= applies to token ids, not to text")
        ids = _encode_text(codec, prompt, chat or not isinstance(prompt, str))
    else:
        if chat:
            raise InputError("chat=True needs a text prompt or chat messages")
        ids = _unpadded(_one_row(prompt, "input_ids"), attention_mask)
    if not ids:
        raise InputError("the prompt is empty")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise InputError(f"prompt token ids {bad[:5]} are outside the vocabulary (size {vocab_size})")
    return ids


def _encode_text(codec: TextCodec | None, prompt: Any, chat: bool) -> list[int]:
    if isinstance(prompt, str) and not prompt:
        raise InputError("the prompt is empty")
    for text in [prompt] if isinstance(prompt, str) else [m.get("content") for m in prompt]:
        _check_unicode(text)
    if codec is None:
        raise InputError("this target has no tokenizer: pass token ids instead of text (or tokenizer= when building the Decoder)")
    if chat:
        if not isinstance(codec, ChatCodec):
            raise InputError("this tokenizer has no chat template")
        return list(codec.apply_chat_template(prompt))
    return list(codec.encode(prompt))


def _check_unicode(text: Any) -> None:
    """Text a tokenizer can encode: bytes that were not UTF-8 reach Python as lone surrogates
    (a command line's `surrogateescape`), which no tokenizer takes."""
    if not isinstance(text, str):
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(
            f"the prompt is not valid UTF-8 text (character {error.start}: {text[error.start]!r}, from a byte that is "
            "not UTF-8); pass the text encoded as UTF-8"
        ) from None


def _one_row(value: Any, what: str, *, integers: bool = True) -> list[int]:
    """A [n] or [1, n] tensor, or a list (of one list), as a list of ints; with `integers`, only
    integer values are taken (a float or a byte string is not a token id)."""
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not _iterable(value):
        raise InputError(f"{what} must be token ids (a list or tensor of integers), got {type(value).__name__} {_short(value)}")
    if isinstance(value, torch.Tensor):
        if integers and (value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool):
            raise InputError(f"{what} must be an integer tensor, got dtype {str(value.dtype).removeprefix('torch.')}")
        if value.dim() == 2:
            if value.shape[0] != 1:
                raise InputError(f"{what} holds a batch of {value.shape[0]} sequences; specdec decodes one at a time: pass one row")
            value = value[0]
        if value.dim() != 1:
            raise InputError(f"{what} must have shape [n] or [1, n], got {list(value.shape)}")
        return [int(t) for t in value.tolist()]
    rows = list(value)
    if rows and (isinstance(rows[0], (list, tuple)) or isinstance(rows[0], torch.Tensor) and rows[0].dim() > 0):
        if len(rows) != 1:
            raise InputError(f"{what} holds a batch of {len(rows)} sequences; specdec decodes one at a time: pass one row")
        rows = list(rows[0])
    if integers:
        odd = [t for t in rows if isinstance(t, bool) or not isinstance(t, (int, numbers.Integral)) and not _integer_tensor(t)]
        if odd:
            raise InputError(f"{what} must be token ids (integers), got {type(odd[0]).__name__} {_short(odd[0])}")
    try:
        return [int(t) for t in rows]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be token ids (integers), got {rows[:3]!r}...") from None


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _integer_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_floating_point and value.dtype != torch.bool


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unpadded(ids: list[int], attention_mask: Any) -> list[int]:
    """`ids` without left padding; refuses padding anywhere else."""
    if attention_mask is None:
        return ids
    mask = _one_row(attention_mask, "attention_mask", integers=False)
    if len(mask) != len(ids):
        raise InputError(f"attention_mask has {len(mask)} entries but input_ids has {len(ids)}")
    start = next((i for i, m in enumerate(mask) if m), len(mask))
    if not all(mask[start:]):
        raise InputError("attention_mask has padding after the first real token; only left padding can be removed")
    return ids[start:]
