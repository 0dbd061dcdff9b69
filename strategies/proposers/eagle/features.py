"""The target's hidden states over the training text, computed once and cached on disk.

One forward of the target (as loaded, through the same `FeatureModel` forward decoding uses) over
each whole sequence gives the states of the layers the head reads, and of the final layer, whose
LM-head scores are the target distributions the head learns. They are stored in float16 chunk
files of a few dozen sequences each; a rerun reads the chunks that exist and computes the rest,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import attrs
import torch

from .data import Example, digest

FORMAT = "specdec-eagle-features/1"


@attrs.frozen
class FeatureStore:
    """Sequences and the target's states at every position, concatenated in order."""

    tokens: torch.Tensor  # [N] int64
    offsets: torch.Tensor  # [S + 1] int64: sequence s is rows offsets[s]:offsets[s + 1]
    answer_starts: torch.Tensor  # [S] int64: the first answer position of each sequence
    greedy: torch.Tensor  # [S] bool: the answer is the target's greedy one
    layers: dict[int, torch.Tensor] = attrs.field(eq=False)  # layer -> [N, hidden] float16

    def __len__(self) -> int:
        return int(self.offsets.numel()) - 1

    def sequence(self, s: int) -> slice:
        return slice(int(self.offsets[s]), int(self.offsets[s + 1]))


def _chunk_path(directory: Path, index: int) -> Path:
    return directory / f"features-{index:05d}.safetensors"


def cache_features(target, examples: Sequence[Example], layers: Sequence[int], directory: Path, key: str, *,
                   chunk: int = 32, advance: Callable[[int], None] = lambda n: None) -> FeatureStore:
    """The states of `layers` over every example (the chunks in `directory` made for `key` and
    the same sequences are reused); `advance(n)` after each n sequences."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    layers = sorted(set(layers))
    parts: list[dict[str, torch.Tensor]] = []
    for index, start in enumerate(range(0, len(examples), chunk)):
        batch = examples[start : start + chunk]
        made_for = digest(key, layers, [example.tokens for example in batch])
        path = _chunk_path(directory, index)
        if path.is_file():
            try:
                with safe_open(str(path), framework="pt") as handle:
                    meta = handle.metadata() or {}
                    if meta.get("format") == FORMAT and meta.get("key") == made_for:
                        parts.append({name: handle.get_tensor(name) for name in handle.keys()})
                        advance(len(batch))
                        continue
            except Exception:  # a chunk cut by an interrupted write is computed again
                pass
        computed = _teacher_force(target, batch, layers)
        save_file(computed, str(path), metadata={"format": FORMAT, "key": made_for, "layers": json.dumps(layers)})
        parts.append(computed)
        advance(len(batch))
    return _concatenate(parts, layers)


def _teacher_force(target, examples: Sequence[Example], layers: Sequence[int]) -> dict[str, torch.Tensor]:
    tokens, lengths, starts, greedy = [], [], [], []
    states: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for example in examples:
        ids = example.tokens
        target.reset()
        out = target.forward(ids, features=tuple(layers))
        for layer, state in zip(layers, out.features):
            states[layer].append(state.to(torch.float16))
        tokens.append(torch.tensor(ids, dtype=torch.int64))
        lengths.append(len(ids))
        starts.append(len(example.prompt))
        greedy.append(example.kind == "greedy")
    target.reset()
    out = {
        "tokens": torch.cat(tokens), "lengths": torch.tensor(lengths, dtype=torch.int64),
        "answer_starts": torch.tensor(starts, dtype=torch.int64), "greedy": torch.tensor(greedy, dtype=torch.bool),
    }
    out.update({f"layer_{layer}": torch.cat(states[layer]).contiguous() for layer in layers})
    return out


def _concatenate(parts: list[dict[str, torch.Tensor]], layers: Sequence[int]) -> FeatureStore:
    lengths = torch.cat([p["lengths"] for p in parts])
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    return FeatureStore(
        torch.cat([p["tokens"] for p in parts]), offsets, torch.cat([p["answer_starts"] for p in parts]),
        torch.cat([p["greedy"] for p in parts]), {layer: torch.cat([p[f"layer_{layer}"] for p in parts]) for layer in layers},
    )
