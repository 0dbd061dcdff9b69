"""One generation at a time per decoder and per model.

A model adapter holds the KV cache of one sequence, and a decoder its strategies' state for one
call, so two generations interleaving on either corrupt each other silently (wrong tokens, or NaN
logits from a cache cropped under a running forward). A generation claims its decoder and every
model it runs without waiting; a claim on something already claimed is a `ConcurrentUseError`
at once, so misuse is loud instead of a wrong answer (or a deadlock, for a stream left unfinished
in the same thread).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterable, Iterator

from specdec.errors import ConcurrentUseError
from specdec.integrations.base import LanguageModel

_guard = threading.Lock()
_claimed: set[int] = set()  # ids of the decoders and models generating now (each alive while claimed)


@contextlib.contextmanager
def claimed(decoder: Any, models: Iterable[LanguageModel]) -> Iterator[None]:
    """Hold `decoder` and `models` for one generation, or raise `ConcurrentUseError` at once."""
    models = list(models)
    keys = {id(decoder): None, **{id(m): m for m in models}}
    with _guard:
        busy = [key for key in keys if key in _claimed]
        if busy:
            raise ConcurrentUseError(_message(busy[0], keys, decoder))
        _claimed.update(keys)
    try:
        yield
    finally:
        with _guard:
            _claimed.difference_update(keys)


def _message(key: int, keys: dict[int, Any], decoder: Any) -> str:
    if key == id(decoder):
        return (
            "this Decoder is already generating (in another thread, or a stream not run to its end): a Decoder "
            "runs one generation at a time; give each thread its own Decoder and models, or finish or close the stream"
        )
    name = getattr(keys[key], "name", type(keys[key]).__name__)
    return (
        f"the model {name!r} is already generating for another Decoder: a loaded model holds the cache of one "
        "sequence; load the model once per thread that generates at the same time"
    )
