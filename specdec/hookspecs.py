"""Every extension point of specdec, in one place.

A plugin is a module (or object) with functions marked `@hookimpl` whose names match the
specifications below. Third-party plugins are found through the `specdec` entry-point group; the
built-in strategies are registered through exactly the same path.
"""

from __future__ import annotations

import pluggy

PROJECT = "specdec"
ENTRY_POINT_GROUP = "specdec"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------------
# Strategy registration
# ---------------------------------------------------------------------------------------------
@hookspec
def specdec_register_policies() -> dict[str, type]:
    """Return ``{name: policy class}`` for the length policies this plugin provides.

    Each class is an attrs class implementing `specdec.LengthPolicy`; its attrs fields are the
    parameters users set by name (``--policy NAME --policy-param KEY=VALUE``).
    """


@hookspec
def specdec_register_proposers() -> dict[str, type]:
    """Return ``{name: proposer class}`` for the proposers this plugin provides.

    Each class is an attrs class implementing `specdec.Proposer`. A field named ``model`` receives
    the draft model the user selected (``--draft PATH``); other fields are parameters.
    """
