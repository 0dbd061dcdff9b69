"""The class path vLLM imports: `configured.<NAME>` is `SpecdecProposer` bound to the options NAME
encodes (`VllmOptions.class_name`), made on first lookup in each process."""

from __future__ import annotations

from .options import VllmOptions
from .proposer import SpecdecProposer

_classes: dict[str, type[SpecdecProposer]] = {}


def __getattr__(name: str) -> type[SpecdecProposer]:
    if name.startswith("__"):  # dunder probes (pickling, introspection) are not proposer names
        raise AttributeError(name)
    if name not in _classes:
        options = VllmOptions.from_class_name(name)
        _classes[name] = type(name, (SpecdecProposer,), {"options": options, "__module__": __name__})
    return _classes[name]
