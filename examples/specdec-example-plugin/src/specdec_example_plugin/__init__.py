"""specdec-example-plugin: one length policy and one proposer, registered through entry points.

`pyproject.toml` points the `specdec` entry-point group at this module; specdec calls the two
hook implementations below once, when it builds its registry.
"""

from __future__ import annotations

from specdec.hookspecs import hookimpl

from .bigram import BigramProposer
from .budget import BudgetPolicy

__all__ = ["BigramProposer", "BudgetPolicy"]


@hookimpl
def specdec_register_policies() -> dict[str, type]:
    return {"budget": BudgetPolicy}


@hookimpl
def specdec_register_proposers() -> dict[str, type]:
    return {"bigram": BigramProposer}
