"""Proposers: what to draft."""

from .draft_model import DraftModelProposer
from .eagle import EagleProposer
from .ouroboros import OuroborosProposer
from .prompt_lookup import PromptLookupProposer

__all__ = ["DraftModelProposer", "EagleProposer", "OuroborosProposer", "PromptLookupProposer"]

from specdec.hookspecs import hookimpl


@hookimpl
def specdec_register_proposers() -> dict[str, type]:
    return {
        "draft": DraftModelProposer, "prompt-lookup": PromptLookupProposer, "ouroboros": OuroborosProposer, "eagle": EagleProposer,
    }
