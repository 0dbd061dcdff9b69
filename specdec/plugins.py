"""Plugin discovery: the built-in and entry-point plugins registered into a `Registry`.

Built-in strategies are the plugins listed in `BUILTIN_PLUGINS`; they are loaded and registered
by the same function as the plugins of the `specdec` entry-point group, so the third-party path
runs every time. Each plugin's hooks are called through pluggy on their own (a subset hook caller
holding just that plugin), so hookimpl options apply and every strategy name is attributed to the
plugin that returned it. A plugin that fails to import (`sys.exit()` included), breaks a hook or
returns something that is not a strategy is recorded in `Registry.failures` (shown by `specdec
plugins`, and named when an unknown strategy name is used) and skipped. A name that two plugins
claim becomes ambiguous: using it is an error naming both, other names keep working.

`SPECDEC_DISABLE_PLUGINS=1` skips every third-party plugin; a comma-separated list of entry-point
or distribution names skips just those (the way out of a clash).

What is registered (`Registry`, `StrategyEntry`, `PluginInfo`, `PluginFailure`) and the check of a
strategy class live in `specdec/registry.py`; the four classes are part of this module's public
API too (imported here, documented as `specdec.plugins.*`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from typing import Any, Callable, Iterator, Mapping

import attrs
import pluggy

from specdec import hookspecs
from specdec.errors import PluginError
from specdec.registry import DISABLE_ENV, PluginFailure, PluginInfo, Registry, StrategyEntry, check_strategy

BUILTIN_PLUGINS = ("specdec.strategies.policies", "specdec.strategies.proposers")
HOOKS = {"policy": "specdec_register_policies", "proposer": "specdec_register_proposers"}


# ---------------------------------------------------------------------------- discovery
@attrs.frozen
class _Candidate:
    origin: PluginInfo
    load: Callable[[], object]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def disabled_plugins() -> tuple[bool, frozenset[str]]:
    """(all third-party plugins disabled, names disabled) from `SPECDEC_DISABLE_PLUGINS`."""
    raw = os.environ.get(DISABLE_ENV, "").strip()
    if raw.lower() in ("1", "true", "yes", "all", "*"):
        return True, frozenset()
    return False, frozenset(_normalise(n) for n in raw.split(",") if n.strip() and n.strip() != "0")


def _builtin_candidates() -> Iterator[_Candidate]:
    from specdec import __version__

    for module_name in BUILTIN_PLUGINS:
        yield _Candidate(
            PluginInfo(module_name, "specdec", __version__, builtin=True),
            lambda module_name=module_name: importlib.import_module(module_name),
        )


def _entry_point_candidates() -> Iterator[_Candidate]:
    points = importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    listed = sorted(points, key=lambda ep: ((ep.dist.name if ep.dist else ""), ep.name))
    for ep in listed:
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "?"
        yield _Candidate(PluginInfo(ep.name, dist, version), ep.load)


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(registry: Registry, pm: pluggy.PluginManager, candidate: _Candidate) -> None:
    """The one registration path of built-in and third-party plugins; failures are recorded."""
    origin = candidate.origin
    plugin: object = None
    try:
        plugin = candidate.load()
        entries = _collect(pm, plugin, origin)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # a broken plugin, even one calling sys.exit(), must not take the others down
        if plugin is not None and pm.is_registered(plugin) and pm.get_name(plugin) == _pluggy_name(origin):
            pm.unregister(plugin)
        message = _failure_message(error)
        registry.failures.append(PluginFailure(origin.plugin, origin.distribution, origin.version, message))
        return
    registry.plugins.append(origin)
    for entry in entries:
        registry.add(entry)


def _failure_message(error: BaseException) -> str:
    if isinstance(error, PluginError):
        return str(error)
    if isinstance(error, SystemExit):
        return f"tried to end the process while loading (SystemExit: {error.code!r})"
    return f"{type(error).__name__}: {error}"


def _pluggy_name(origin: PluginInfo) -> str:
    """Unique within the manager even when two distributions reuse an entry-point name."""
    return origin.plugin if origin.builtin else f"{origin.distribution}:{origin.plugin}"


def _collect(pm: pluggy.PluginManager, plugin: object, origin: PluginInfo) -> list[StrategyEntry]:
    """Register `plugin` with pluggy, call its hooks and check what they return."""
    if pm.is_registered(plugin):
        raise PluginError(f"the same plugin object is already registered as {pm.get_name(plugin)!r}")
    pm.register(plugin, name=_pluggy_name(origin))
    callers = pm.get_hookcallers(plugin) or []
    unknown = sorted(c.name for c in callers if not c.has_spec())
    if unknown:
        raise PluginError(f"unknown hook(s) {', '.join(unknown)}; specdec's hooks are {', '.join(HOOKS.values())}")
    if not callers:
        raise PluginError(
            f"defines no specdec hook (expected a function marked @hookimpl named one of {', '.join(HOOKS.values())})"
        )
    others = [p for p in pm.get_plugins() if p is not plugin]
    entries: list[StrategyEntry] = []
    for kind, hook_name in HOOKS.items():
        # this plugin alone: its results are its own, its hookimpl options (order, wrappers) apply
        results = pm.subset_hook_caller(hook_name, remove_plugins=others)()
        if not isinstance(results, list):
            raise PluginError(f"{hook_name} wrapper returned {type(results).__name__}, expected the list of results")
        claimed: set[str] = set()
        for result in results:
            if result is None:
                continue
            if not isinstance(result, Mapping):
                raise PluginError(f"{hook_name} returned {type(result).__name__}, expected a dict of name -> class")
            for name, cls in result.items():
                check_strategy(kind, name, cls)
                if name in claimed:
                    raise PluginError(f"{hook_name} returned the {kind} name {name!r} twice")
                claimed.add(name)
                entries.append(StrategyEntry(name, kind, cls, origin))
    return entries


def load_registry(*, entry_points: bool = True) -> Registry:
    """Register the built-ins, then every plugin of the `specdec` entry-point group."""
    registry = Registry()
    pm = _plugin_manager()
    for candidate in _builtin_candidates():
        _register(registry, pm, candidate)
    if not entry_points:
        return registry
    everything, names = disabled_plugins()
    for candidate in _entry_point_candidates():
        origin = candidate.origin
        if everything or {_normalise(origin.plugin), _normalise(origin.distribution)} & names:
            registry.disabled.append(origin)
            continue
        _register(registry, pm, candidate)
    return registry


_REGISTRY: Registry | None = None


def registry(*, reload: bool = False) -> Registry:
    """The process-wide registry, loaded on first use (`reload=True` rescans the entry points)."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        importlib.invalidate_caches()
        _REGISTRY = load_registry()
    return _REGISTRY


def make_policy(name: str, **params: Any) -> Any:
    """A length policy by its registered name, e.g. ``make_policy("fixed", k=3)``."""
    return registry().create("policy", name, **params)


def make_proposer(name: str, **params: Any) -> Any:
    """A proposer by its registered name, e.g. ``make_proposer("draft", model=path_or_model)``."""
    return registry().create("proposer", name, **params)
