"""Which tokens a trimmed draft head keeps: the most frequent ones first.

For the SmolLM2 tokenizer (the default pair) the order ships with the package: token counts over
GSM8K-train questions and answers, then BPE merge rank for ties and unseen tokens. For other
vocabularies merge rank alone (lower id first) stands in for frequency, which byte-level BPE
vocabularies roughly follow.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

_SHIPPED = {49152: Path(__file__).parent / "data" / "smollm2_frequent_tokens.json"}


@functools.lru_cache(maxsize=4)
def _shipped_order(vocab_size: int) -> tuple[int, ...] | None:
    path = _SHIPPED.get(vocab_size)
    if path is None or not path.exists():
        return None
    return tuple(json.loads(path.read_text())["order"])


def frequent_tokens(vocab_size: int, count: int, always: frozenset[int] = frozenset()) -> list[int]:
    """The `count` most frequent token ids of a vocabulary, plus the `always` ids (e.g. EOS)."""
    order = _shipped_order(vocab_size) or tuple(range(vocab_size))
    if count > len(order):
        order = order + tuple(t for t in range(vocab_size) if t not in set(order))
    return sorted(set(order[:count]) | set(always))
