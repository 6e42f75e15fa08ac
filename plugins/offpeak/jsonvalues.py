"""JSON read and written digit for digit: numbers as Decimal, never through a float."""

# The crawl decodes a JSON API's body with these and the transform reads the feed with them:
# a number keeps every digit it was sent with (0.1000000000000000055511151231257827, an int
# beyond 2**53), where json's default float would round it. A contract of two processes,
# written once (offpeak.scraping.spiders and offpeak.pipeline.normalize import it).

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

# One object each, as json's own constants: a record holding NaN compares equal to itself.
_CONSTANTS = {name: Decimal(name) for name in ("NaN", "Infinity", "-Infinity")}


def loads(text: str | bytes) -> Any:
    """``text`` decoded, every number with a fraction or exponent as a Decimal (ints are
    exact already), NaN and Infinity (not JSON, but what Python and JavaScript write) as
    Decimal too, so that the value that holds one is refused by name, not the whole page."""
    return json.loads(text, parse_float=Decimal, parse_constant=_CONSTANTS.__getitem__)


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"key {key!r} is given twice in one object")
        found[key] = value
    return found


def loads_strict(text: str) -> Any:
    """``text`` as RFC 8259 JSON, numbers as Decimal; NaN, Infinity and an object that names
    a key twice (json would keep the last silently) are refused."""
    return json.loads(
        text, parse_float=Decimal, parse_constant=_not_json, object_pairs_hook=_unique
    )


def number_text(value: Decimal) -> str:
    """A Decimal as a JSON number (``1.50``, ``1E+5``); NaN and Infinity as Python's json
    writes them, which loads_strict then refuses."""
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value < 0 else "Infinity"
    return str(value)


def plain_number(value: Decimal) -> str:
    """A Decimal in positional notation, every digit kept (``1E+5`` is ``100000``,
    ``1E-7`` is ``0.0000001``): what a number field reads. Not a finite number, or one
    too long to write out (an exponent beyond PostgreSQL's numeric range), as number_text."""
    if not value.is_finite() or not -16383 <= value.as_tuple().exponent <= 131072:
        return number_text(value)
    return format(value, "f")


def dumps(value: Any) -> str:
    """``value`` as JSON text, each number exactly (a Decimal with all its digits), strings
    unescaped beyond what JSON needs (ensure_ascii off), separators as json.dumps'."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return number_text(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}: {dumps(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} {value!r} is not a JSON value")
