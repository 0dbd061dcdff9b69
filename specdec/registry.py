"""The strategy registry: what plugins registered, by kind and name, and what failed.

`Registry` maps (kind, name) to a `StrategyEntry` (the class, its parameters, the `PluginInfo`
of the plugin that provided it), keeps ambiguous names and `PluginFailure`s apart, and builds
strategies from typed values. `check_strategy` decides whether a class a plugin returned is a
strategy at all. Discovery (built-ins, entry points, pluggy) is `specdec/plugins.py`, which
imports this module and not the other way round.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Collection, Mapping

import attrs

from specdec.errors import ConfigurationError, PluginError
from specdec.parameters import Parameter, init_fields, parameters, public_name

KINDS = ("policy", "proposer")
# the protocol each kind implements, as (module, class): imported when a strategy is checked
PROTOCOLS = {"policy": ("specdec.policy", "LengthPolicy"), "proposer": ("specdec.proposer", "Proposer")}
DISABLE_ENV = "SPECDEC_DISABLE_PLUGINS"  # read by discovery (`specdec.plugins`), named in errors here
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

    def build(self, params: Mapping[str, Any] | None = None, **resources: Any) -> Any:
        """An instance from typed parameters plus `resources` (such as the draft `model`): each
        resource goes to the field of its name when the class has one, and cannot be set as a
        parameter. What `Decoder(policy=..., proposer=..., draft=...)` builds by name."""
        values = {self.field(key, reserved=resources).name: value for key, value in (params or {}).items()}
        fields = self.fields()
        values.update({key: value for key, value in resources.items() if key in fields})
        return self.create(**values)

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
            failed = ", ".join(sorted({f.distribution for f in self.failures}))
            also = f"; plugins that failed to load: {failed}" if failed else ""
            raise PluginError(f"unknown {kind} {name!r}; available: {known}{also} (see `specdec plugins`)") from None

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Instantiate a strategy from typed Python values (nothing is parsed)."""
        return self.get(kind, name).create(**params)


# ---------------------------------------------------------------------------- the strategy check
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


def check_strategy(kind: str, name: object, cls: object) -> None:
    """A clear `PluginError` unless `cls` is an attrs class with every member of the `kind` protocol."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(f"{kind} name {name!r} is not valid: use lower-case letters, digits, '-', '_' or '.'")
    if not isinstance(cls, type) or not attrs.has(cls):
        raise PluginError(f"{kind} {name!r} must be an attrs class (its fields are the parameters), got {cls!r}")
    field_names = {f.name for f in attrs.fields(cls)}
    missing = [m for m in protocol_members(kind) if not hasattr(cls, m) and m not in field_names]
    if missing:
        raise PluginError(f"{kind} {name!r} ({cls.__qualname__}) lacks {', '.join(missing)} of the {kind} protocol")
