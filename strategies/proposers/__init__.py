"""Proposers: what to draft."""

from .draft_model import DraftModelProposer

__all__ = ["DraftModelProposer"]

from specdec.hookspecs import hookimpl


@hookimpl
def specdec_register_proposers() -> dict[str, type]:
    return {"draft": DraftModelProposer}
