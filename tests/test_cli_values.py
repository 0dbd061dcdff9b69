"""Strategy parameters given as text on the command line, read with their fields' annotations."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any, Literal

import pytest

from specdec import ConfigurationError
from specdec.cli.values import build_strategy, parse_params, parse_value
from specdec.parameters import describe_type
from specdec.plugins import registry


class Colour(enum.Enum):
    RED = "r"
    BLUE = "b"


@pytest.mark.parametrize(
    "raw,annotation,expected",
    [("3", int, 3), ("3", float, 3.0), ("3", int | float, 3), ("0.5", int | float, 0.5), ("off", bool, False),
     ("none", int | None, None), ("7", int | None, 7), ("text", str, "text"), ("x", str | int, "x"), ("12", str | int, 12),
     ("lazy", Literal["eager", "lazy"], "lazy"), ("2", Literal[1, 2], 2), ("BLUE", Colour, Colour.BLUE),
     ("r", Colour, Colour.RED), ("a/b", Path, Path("a/b")), ("anything", Any, "anything")],
)
def test_parse_value_reads_the_annotation(raw, annotation, expected):
    value = parse_value(raw, annotation)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "raw,annotation,message",
    [("maybe", bool, "expects bool (true/false, yes/no, on/off or 1/0), got 'maybe'"),
     ("x", float | None, "expects float or none, got 'x'"),
     ("1,2", tuple, "expects tuple, got '1,2'"),
     ("fast", Literal["eager", "lazy"], "expects one of 'eager', 'lazy', got 'fast'")],
)
def test_parse_value_errors_name_the_expected_type(raw, annotation, message):
    with pytest.raises(ConfigurationError, match=re.escape(f"parameter 'p' {message}")):
        parse_value(raw, annotation, what="parameter 'p'")


def test_the_listing_and_the_errors_describe_a_type_alike():
    assert describe_type(Colour | None) == "one of 'red', 'blue' or none"
    with pytest.raises(ConfigurationError, match=re.escape("expects one of 'red', 'blue' or none")):
        parse_value("green", Colour | None)


def test_key_value_pairs():
    assert parse_params(["k=4", " h = 0.3 ", "path=a=b"]) == {"k": "4", "h": "0.3", "path": "a=b"}
    assert parse_params(None) == {}
    for bad in ("k", "=4"):
        with pytest.raises(ConfigurationError, match=re.escape(f"parameters are KEY=VALUE, got {bad!r}")):
            parse_params([bad])


def test_build_strategy_parses_text_and_passes_typed_values_through():
    reg = registry()
    assert build_strategy(reg, "policy", "fixed", {"k": "3"}).k == 3
    assert build_strategy(reg, "policy", "fixed", {"k": 5}).k == 5
    with pytest.raises(ConfigurationError, match=re.escape("policy 'fixed': parameter 'k' expects int, got 'x'")):
        build_strategy(reg, "policy", "fixed", {"k": "x"})
