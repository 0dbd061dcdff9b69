"""Plugin discovery and the strategy registry built from it.

Built-in strategies are listed in `BUILTIN_PLUGINS` and registered through the same function as
entry-point plugins. A plugin that fails to import is recorded in `Registry.failures` (reported by
`specdec plugins`) and skipped; two strategies with the same name are an error naming both sources.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import types
import typing
from typing import Any, Mapping

import attrs
import pluggy

from specdec import hookspecs
from specdec.errors import ConfigurationError, PluginError

BUILTIN_PLUGINS = ("specdec.strategies.policies", "specdec.strategies.proposers")
KINDS = ("policy", "proposer")


@attrs.frozen
class StrategyEntry:
    name: str
    kind: str
    cls: type
    source: str  # plugin name: module for built-ins, distribution for third parties
    version: str


@attrs.frozen
class PluginFailure:
    plugin: str
    distribution: str
    error: str


@attrs.define
class Registry:
    entries: dict[tuple[str, str], StrategyEntry] = attrs.field(factory=dict)
    failures: list[PluginFailure] = attrs.field(factory=list)

    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self.entries if k == kind)

    def get(self, kind: str, name: str) -> StrategyEntry:
        try:
            return self.entries[(kind, name)]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise PluginError(f"unknown {kind} {name!r}; available: {known}") from None

    def build(self, kind: str, name: str, params: Mapping[str, Any] | None = None, **resources: Any) -> Any:
        """Instantiate a strategy from string or typed parameters, validated by its attrs fields."""
        entry = self.get(kind, name)
        fields = {f.name: f for f in attrs.fields(entry.cls) if f.init}
        kwargs: dict[str, Any] = {}
        for key, raw in (params or {}).items():
            field = fields.get(key.replace("-", "_"))
            if field is None or field.name in resources:
                settable = ", ".join(k for k in fields if k not in resources) or "none"
                raise ConfigurationError(f"{kind} {name!r} has no parameter {key!r}; parameters: {settable}")
            kwargs[field.name] = parse_value(raw, field, entry.cls) if isinstance(raw, str) else raw
        for key, value in resources.items():
            if key in fields:
                kwargs[key] = value
        try:
            return entry.cls(**kwargs)
        except TypeError as error:
            raise ConfigurationError(f"cannot build {kind} {name!r}: {error}") from None


def parse_value(raw: str, field: attrs.Attribute, owner: type) -> Any:
    """Convert a command-line string to the field's annotated type (int, float, bool, str, path)."""
    hints = typing.get_type_hints(owner)
    annotation = hints.get(field.name, str)
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union else (annotation,)
    if raw.lower() in ("none", "null") and type(None) in candidates:
        return None
    for kind in (bool, int, float, str):
        if kind in candidates:
            try:
                return _convert(raw, kind)
            except ValueError:
                continue
    if len(candidates) == 1 and callable(candidates[0]):
        return candidates[0](raw)
    raise ConfigurationError(f"cannot read {raw!r} as a value for parameter {field.name!r}")


def _convert(raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    return kind(raw)


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """['k=4', 'h=0.3'] -> {'k': '4', 'h': '0.3'}."""
    params: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"parameters are KEY=VALUE, got {pair!r}")
        params[key.strip()] = value.strip()
    return params


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(registry: Registry, pm: pluggy.PluginManager, plugin: object, source: str, version: str) -> None:
    """The one registration path of built-in and third-party plugins."""
    pm.register(plugin, name=source)
    hooks = {"policy": pm.hook.specdec_register_policies, "proposer": pm.hook.specdec_register_proposers}
    for kind, hook in hooks.items():
        impls = [impl for impl in hook.get_hookimpls() if impl.plugin is plugin]
        for impl in impls:
            for name, cls in (impl.function() or {}).items():
                key = (kind, name)
                if key in registry.entries:
                    other = registry.entries[key]
                    raise PluginError(
                        f"two {kind} strategies are named {name!r}: one from {other.source!r}, one from {source!r}"
                    )
                registry.entries[key] = StrategyEntry(name, kind, cls, source, version)


def load_registry(*, entry_points: bool = True) -> Registry:
    """Register the built-ins, then every plugin of the `specdec` entry-point group."""
    registry = Registry()
    pm = _plugin_manager()
    from specdec import __version__

    for module_name in BUILTIN_PLUGINS:
        _register(registry, pm, importlib.import_module(module_name), module_name, __version__)
    if entry_points and os.environ.get("SPECDEC_DISABLE_PLUGINS") != "1":
        for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "?"
            try:
                plugin = ep.load()
            except Exception as error:  # a broken plugin must not take the others down
                registry.failures.append(PluginFailure(ep.name, dist, f"{type(error).__name__}: {error}"))
                continue
            _register(registry, pm, plugin, dist, version)
    return registry


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY
