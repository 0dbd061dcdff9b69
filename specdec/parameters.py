"""A strategy's parameters: the attrs ``init`` fields users may set, with types as users read them.

The registry lists them (`specdec plugins`, the generated docs) and the command line parses text
into them (`specdec.cli.values`); both read the annotations through this module, so a type is
described the same way everywhere.
"""

from __future__ import annotations

import builtins
import enum
import sys
import types
import typing
from typing import Any, Literal

import attrs

# the draft model a proposer (or a policy tied to it, such as pacer) receives from --draft, and
# the target a proposer drafting from its hidden states receives: not user-set parameters
RESOURCE_FIELDS = ("model", "target")


@attrs.frozen
class Parameter:
    """One settable field of a strategy, as users see it."""

    name: str
    type: str  # human-readable expected type, e.g. "int" or "float or none"
    default: str | None  # repr of the default; None when the parameter is required

    def __str__(self) -> str:
        return f"{self.name}: {self.type}" + (f" = {self.default}" if self.default is not None else " (required)")


def init_fields(cls: type) -> dict[str, attrs.Attribute]:
    """The fields a strategy is built from, by attribute name."""
    return {f.name: f for f in attrs.fields(cls) if f.init}


def public_name(field: attrs.Attribute) -> str:
    """The name users set a field by (its alias, e.g. `rounds` for `_rounds`)."""
    return field.alias or field.name


def parameters(cls: type) -> list[Parameter]:
    """The parameters users may set (resources such as the draft model excluded)."""
    hints = field_types(cls)
    return [
        Parameter(public_name(field), describe_type(hints.get(field.name, Any)), _default_text(field))
        for field in init_fields(cls).values()
        if field.name not in RESOURCE_FIELDS
    ]


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of an attrs class; unresolvable ones fall back to `Any` (raw strings)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a plugin may annotate with names only imported under TYPE_CHECKING
        pass
    namespace = dict(vars(builtins))
    namespace.update(vars(sys.modules.get(cls.__module__, builtins)))
    hints: dict[str, Any] = {}
    for field in attrs.fields(cls):
        annotation = field.type
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 - the class's own annotation text
            except Exception:
                annotation = Any
        hints[field.name] = Any if annotation is None else annotation
    return hints


def union_members(annotation: Any) -> tuple[Any, ...]:
    """`int | None` -> (int, NoneType); anything else -> (annotation,)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def describe_type(annotation: Any) -> str:
    """How an annotation reads in listings and messages: 'int', 'float or none', "one of 'a', 'b'"."""
    parts = []
    for option in union_members(annotation):
        if option is type(None):
            parts.append("none")
        elif typing.get_origin(option) is Literal:
            parts.append("one of " + ", ".join(repr(v) for v in typing.get_args(option)))
        elif isinstance(option, type) and issubclass(option, enum.Enum):
            parts.append("one of " + ", ".join(repr(m.name.lower()) for m in option))
        elif option is Any:
            parts.append("any")
        else:
            parts.append(getattr(option, "__name__", None) or str(option))
    return " or ".join(parts)


def _default_text(field: attrs.Attribute) -> str | None:
    if field.default is attrs.NOTHING:
        return None
    if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        factory = field.default.factory
        return f"{getattr(factory, '__name__', 'factory')}()"
    return repr(field.default)
