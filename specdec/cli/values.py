"""Strategy parameters given as text (``--policy-param k=4``, ``fixed:k=4``), read as typed values.

A value is parsed with the annotation of the field it sets (int, float, bool, str, Literal, Enum,
paths, ``X | None``), so plugins declare types once, as attrs fields, and the command line
follows. Python callers pass typed values (`Decoder(policy=..., policy_params=...)`) and never come here.
"""

from __future__ import annotations

import enum
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Literal, Mapping

from specdec.errors import ConfigurationError
from specdec.parameters import describe_type, field_types, union_members

if TYPE_CHECKING:
    from specdec.registry import Registry

# calling these on a string splits it into characters instead of reading a value
_NOT_FROM_TEXT = (tuple, list, dict, set, frozenset, bytes)


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """['k=4', 'h=0.3'] -> {'k': '4', 'h': '0.3'}."""
    params: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"parameters are KEY=VALUE, got {pair!r}")
        params[key.strip()] = value.strip()
    return params


def build_strategy(reg: Registry, kind: str, name: str, params: Mapping[str, Any] | None = None,
                   **resources: Any) -> Any:
    """Instantiate a strategy from command-line parameters.

    String values are parsed with the field's annotation; `resources` (such as the draft `model`)
    go to the fields of the same name when the class has them and cannot be set as parameters.
    """
    return reg.get(kind, name).build(typed_params(reg, kind, name, params, reserved=resources), **resources)


def typed_params(reg: Registry, kind: str, name: str, params: Mapping[str, Any] | None = None, *,
                 reserved: Collection[str] = ()) -> dict[str, Any]:
    """`params` by field name, string values parsed with the field's annotation: an unknown
    strategy or parameter (or one of the `reserved` resource fields) or a value of the wrong type
    is a `ConfigurationError`. Needs no model, so a command checks its options before loading any."""
    entry = reg.get(kind, name)
    hints = field_types(entry.cls)
    values: dict[str, Any] = {}
    for key, raw in (params or {}).items():
        field = entry.field(key, reserved=reserved)
        if isinstance(raw, str):
            raw = parse_value(raw, hints.get(field.name, Any), what=f"{kind} {name!r}: parameter {key!r}")
        values[field.name] = raw
    return values


def parse_value(raw: str, annotation: Any, *, what: str = "parameter") -> Any:
    """Convert a command-line string to a value of `annotation`.

    Raises a `ConfigurationError` naming the parameter (`what`) and the expected type.
    """
    options = union_members(annotation)
    if raw.strip().lower() in ("none", "null") and type(None) in options:
        return None
    if Any in options:
        return raw
    for option in sorted((o for o in options if o is not type(None)), key=_precedence):
        try:
            return _convert(raw.strip(), option)
        except (ValueError, TypeError, KeyError):
            continue
    spelled = " (true/false, yes/no, on/off or 1/0)" if bool in options else ""
    raise ConfigurationError(f"{what} expects {describe_type(annotation)}{spelled}, got {raw!r}")


def _precedence(option: Any) -> int:
    """Try the narrow readings first, so that '3' is an int before it is a str."""
    order: list[Any] = [bool, int, float]
    if option in order:
        return order.index(option)
    return 10 if option is str else 5


def _convert(raw: str, option: Any) -> Any:
    if option is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if option in (int, float, str, Path):
        return option(raw)
    if typing.get_origin(option) is Literal:
        for value in typing.get_args(option):
            if str(value) == raw or (not isinstance(value, str) and _try(type(value), raw) == value):
                return value
        raise ValueError(raw)
    if isinstance(option, type) and issubclass(option, enum.Enum):
        by_name = {m.name.lower(): m for m in option}
        if raw.lower() in by_name:
            return by_name[raw.lower()]
        return option(raw)
    if callable(option) and option not in _NOT_FROM_TEXT and typing.get_origin(option) not in _NOT_FROM_TEXT:
        return option(raw)
    raise TypeError(f"cannot parse into {option!r}")


def _try(kind: type, raw: str) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        return None
