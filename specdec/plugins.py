"""Plugin discovery and the strategy registry built from it.

Built-in strategies are the plugins listed in `BUILTIN_PLUGINS`; they are loaded and registered
by the same function as the plugins of the `specdec` entry-point group, so the third-party path
runs every time. Each plugin's hooks are called through pluggy on their own (a subset hook caller
holding just that plugin), so hookimpl options apply and every strategy name is attributed to the
plugin that returned it. A plugin that fails to import, breaks a hook or returns something that
is not a strategy is recorded in `Registry.failures` (shown by `specdec plugins`) and skipped. A
name that two plugins claim becomes ambiguous: using it is an error naming both, other names keep
working.

`SPECDEC_DISABLE_PLUGINS=1` skips every third-party plugin; a comma-separated list of entry-point
or distribution names skips just those (the way out of a clash).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from typing import Any, Callable, Collection, Iterator, Mapping

import attrs
import pluggy

from specdec import hookspecs
from specdec.errors import ConfigurationError, PluginError
from specdec.parameters import Parameter, init_fields, parameters, public_name

BUILTIN_PLUGINS = ("specdec.strategies.policies", "specdec.strategies.proposers")
KINDS = ("policy", "proposer")
HOOKS = {"policy": "specdec_register_policies", "proposer": "specdec_register_proposers"}
# the protocol each kind implements, as (module, class): imported when a strategy is checked
PROTOCOLS = {"policy": ("specdec.policy", "LengthPolicy"), "proposer": ("specdec.proposer", "Proposer")}
DISABLE_ENV = "SPECDEC_DISABLE_PLUGINS"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


# ---------------------------------------------------------------------------- value objects
@attrs.frozen
class PluginInfo:
    """Where strategies come from: one plugin of one distribution."""

    plugin: str  # entry-point name, or module name for built-ins
    distribution: str  # "specdec" for the built-ins
    version: str
    builtin: bool = False

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} (plugin {self.plugin!r})"


@attrs.frozen
class StrategyEntry:
    """A registered policy or proposer class and the plugin that provided it."""

    name: str
    kind: str
    cls: type
    origin: PluginInfo

    @property
    def source(self) -> str:
        return str(self.origin)

    @property
    def distribution(self) -> str:
        return self.origin.distribution

    @property
    def version(self) -> str:
        return self.origin.version

    @property
    def summary(self) -> str:
        """First line of the class docstring (what `specdec plugins` and the docs show)."""
        doc = self.cls.__doc__ or ""
        return doc.strip().splitlines()[0].strip() if doc.strip() else ""

    @property
    def uses_draft_model(self) -> bool:
        """A strategy with a `model` field receives the draft model (``--draft``)."""
        return "model" in self.fields()

    def fields(self) -> dict[str, attrs.Attribute]:
        return init_fields(self.cls)

    def parameters(self) -> list[Parameter]:
        """The parameters users may set (resources such as the draft model excluded)."""
        return parameters(self.cls)

    def field(self, key: str, *, reserved: Collection[str] = ()) -> attrs.Attribute:
        """The field a parameter name sets (its name, with '-' for '_', or its alias)."""
        fields = self.fields()
        field = fields.get(key.replace("-", "_")) or next((f for f in fields.values() if f.alias == key), None)
        if field is None or field.name in reserved:
            settable = ", ".join(public_name(f) for f in fields.values() if f.name not in reserved) or "none"
            raise ConfigurationError(f"{self.kind} {self.name!r} has no parameter {key!r}; parameters: {settable}")
        return field

    def create(self, **values: Any) -> Any:
        """An instance from typed values; a missing required parameter or a rejected value is named."""
        fields = self.fields()
        by_field = {self.field(key).name: value for key, value in values.items()}
        missing = [public_name(f) for f in fields.values() if f.default is attrs.NOTHING and f.name not in by_field]
        if missing:
            raise ConfigurationError(f"{self.kind} {self.name!r} needs the parameter(s): {', '.join(missing)}")
        init_kwargs = {public_name(fields[name]): value for name, value in by_field.items()}
        try:
            return self.cls(**init_kwargs)
        except ConfigurationError as error:
            raise ConfigurationError(f"{self.kind} {self.name!r}: {error}") from error
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"cannot build {self.kind} {self.name!r}: {error}") from error


@attrs.frozen
class PluginFailure:
    """A plugin that could not be registered, and why."""

    plugin: str
    distribution: str
    version: str
    error: str


# ---------------------------------------------------------------------------- the registry
@attrs.define
class Registry:
    """Strategy classes by (kind, name), plus what could not be loaded."""

    entries: dict[tuple[str, str], StrategyEntry] = attrs.field(factory=dict)
    conflicts: dict[tuple[str, str], list[StrategyEntry]] = attrs.field(factory=dict)
    failures: list[PluginFailure] = attrs.field(factory=list)
    plugins: list[PluginInfo] = attrs.field(factory=list)
    disabled: list[PluginInfo] = attrs.field(factory=list)

    def names(self, kind: str) -> list[str]:
        """Usable names of one kind (ambiguous names excluded)."""
        return sorted(name for (k, name) in self.entries if k == kind)

    def add(self, entry: StrategyEntry) -> None:
        key = (entry.kind, entry.name)
        if key in self.conflicts:
            self.conflicts[key].append(entry)
        elif key in self.entries:
            self.conflicts[key] = [self.entries.pop(key), entry]
        else:
            self.entries[key] = entry

    def get(self, kind: str, name: str) -> StrategyEntry:
        """The entry for a name; a clear error for unknown or ambiguous names."""
        if kind not in KINDS:
            raise PluginError(f"unknown strategy kind {kind!r}; kinds: {', '.join(KINDS)}")
        key = (kind, name)
        if key in self.conflicts:
            sources = " and ".join(str(e.origin) for e in self.conflicts[key])
            raise PluginError(
                f"two plugins provide a {kind} named {name!r}: {sources}; uninstall one, or skip one with "
                f"{DISABLE_ENV}=<plugin or distribution name>"
            )
        try:
            return self.entries[key]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise PluginError(f"unknown {kind} {name!r}; available: {known} (see `specdec plugins`)") from None

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Instantiate a strategy from typed Python values (nothing is parsed)."""
        return self.get(kind, name).create(**params)

    def build(self, kind: str, name: str, params: Mapping[str, Any] | None = None, **resources: Any) -> Any:
        """Instantiate a strategy from command-line text: `specdec.cli.values.build_strategy`."""
        from specdec.cli.values import build_strategy

        return build_strategy(self, kind, name, params, **resources)


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
    except Exception as error:  # a broken plugin must not take the others down
        if plugin is not None and pm.is_registered(plugin) and pm.get_name(plugin) == _pluggy_name(origin):
            pm.unregister(plugin)
        message = f"{type(error).__name__}: {error}" if not isinstance(error, PluginError) else str(error)
        registry.failures.append(PluginFailure(origin.plugin, origin.distribution, origin.version, message))
        return
    registry.plugins.append(origin)
    for entry in entries:
        registry.add(entry)


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
                _check_strategy(kind, name, cls)
                if name in claimed:
                    raise PluginError(f"{hook_name} returned the {kind} name {name!r} twice")
                claimed.add(name)
                entries.append(StrategyEntry(name, kind, cls, origin))
    return entries


def protocol_members(kind: str) -> tuple[str, ...]:
    """The members every strategy of `kind` must have: its protocol's attributes and methods.

    Read from the protocol class (and the protocols it extends) each time, so a member added to
    the protocol is required at once.
    """
    module_name, class_name = PROTOCOLS[kind]
    protocol = getattr(importlib.import_module(module_name), class_name)
    members: set[str] = set()
    for base in protocol.__mro__:
        if not vars(base).get("_is_protocol") or base.__module__ == "typing":
            continue
        members |= {n for n in vars(base).get("__annotations__", {}) if not n.startswith("_")}
        members |= {
            n for n, v in vars(base).items()
            if not n.startswith("_") and (callable(v) or isinstance(v, (property, staticmethod, classmethod)))
        }
    return tuple(sorted(members))


def _check_strategy(kind: str, name: object, cls: object) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(f"{kind} name {name!r} is not valid: use lower-case letters, digits, '-', '_' or '.'")
    if not isinstance(cls, type) or not attrs.has(cls):
        raise PluginError(f"{kind} {name!r} must be an attrs class (its fields are the parameters), got {cls!r}")
    field_names = {f.name for f in attrs.fields(cls)}
    missing = [m for m in protocol_members(kind) if not hasattr(cls, m) and m not in field_names]
    if missing:
        raise PluginError(f"{kind} {name!r} ({cls.__qualname__}) lacks {', '.join(missing)} of the {kind} protocol")


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
