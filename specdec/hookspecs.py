"""Every extension point of specdec, in one place.

A plugin is a module (or any object) whose functions are marked with `hookimpl` and named after
the specifications below. Third-party plugins are found through the `specdec` entry-point group
(`ENTRY_POINT_GROUP`); the built-in strategies are registered through exactly the same path, so
that path is exercised on every run. Each specification is a signature and a docstring only.

Each plugin's hooks are called through pluggy with that plugin alone, so what a hook returns is
attributed to its plugin and a failure skips only that plugin. Hookimpl options apply within the
plugin: `tryfirst` / `trylast` order its implementations of a hook (a plugin may have several,
with `specname`), and a `wrapper` sees and may change their results, never another plugin's.

Setting the environment variable `SPECDEC_DISABLE_PLUGINS` to `1` skips every third-party
plugin; a comma-separated list of entry-point or distribution names skips just those.
"""

from __future__ import annotations

import pluggy

PROJECT = "specdec"
ENTRY_POINT_GROUP = "specdec"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------
# Strategy registration hooks, called once per plugin when the registry loads
# -------------------------------------------------------------------------


@hookspec
def specdec_register_policies() -> dict[str, type]:
    """Name the length policies this plugin provides.

    Called once for each plugin when the registry is first loaded (by the CLI, or by
    `specdec.plugins.registry()`). The names become valid values of ``--policy`` and of
    `specdec.plugins.make_policy`.

    Each class must be an attrs class implementing `specdec.LengthPolicy`, every member of it (a
    class that lacks one is reported and its plugin skipped). Its ``init`` fields are the
    policy's parameters: users set them by name (``--policy-param KEY=VALUE`` on the command line,
    where the value is parsed with the field's annotation), and its attrs validators reject bad
    values. Give every field a default, so that the policy also runs by its name alone.

    A name already used by another plugin makes the name ambiguous: using it is an error that
    names both plugins, while every other name keeps working.

    :return: ``{name: policy class}``; names are lower-case, words joined by ``-``.
    """


@hookspec
def specdec_register_proposers() -> dict[str, type]:
    """Name the proposers this plugin provides.

    Called once for each plugin when the registry is first loaded. The names become valid values
    of ``--proposer`` and of `specdec.plugins.make_proposer`.

    Each class must be an attrs class implementing `specdec.Proposer`, every member of it (a class
    that lacks one is reported and its plugin skipped). A field named ``model`` receives the draft
    model the user selected (``--draft PATH`` on the command line); the other ``init`` fields are
    parameters set with ``--proposer-param KEY=VALUE``, parsed with their annotations. A proposer
    without a ``model`` field is model-free and refuses ``--draft``.

    :return: ``{name: proposer class}``; names are lower-case, words joined by ``-``.
    """
