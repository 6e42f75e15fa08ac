"""Turn the raw strings a spider scraped into typed values, or say exactly why not."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from offpeak import jsonvalues

_SPACES = re.compile(r"\s+")
_SEPARATORS = ",'\u00a0\u202f\u2009 _"
_GROUPING = str.maketrans("", "", _SEPARATORS)
_NUMBER = re.compile(r"^\d+(\.\d+)?$|^\.\d+$")
# Thousands groups (1,234,567.89) or Indian lakh groups (12,34,567.89); anything else with a
# separator, such as a decimal comma "1,5", is ambiguous and rejected rather than misread.
_GROUPED = re.compile(
    r"^(\d{1,3}(?:([,'\u00a0\u202f\u2009 _])\d{3})(?:\2\d{3})*|\d{1,2}(?:,\d{2})+,\d{3})(\.\d+)?$"
)
# Currency written next to the amount: ISO codes ("CHF 12.50", "12.50 EUR"), a few local
# abbreviations ("kr 26.54", "Rs. 9"), and the letters left of "A$"/"US$"/"HK$" once the symbol
# is gone. Deliberately not any letters: "1.2bn" or "2.5 Cr" must be rejected, not read as 1.2.
_CODES = r"(?:[A-Z]{3}|kr|Kr|Rs|Fr|zł|A|C|NZ|HK|S|US|R)"
_CODE_PREFIX = re.compile(rf"^{_CODES}\.?\s*(?=[\d.])")
_CODE_SUFFIX = re.compile(rf"(?<=[\d.])\s*{_CODES}\.?$")
# Signs a number may start with to be negative (the hyphen, the minus, the figure and en dashes).
MINUS_SIGNS = "-\u2212\u2012\u2013"


class FieldError(ValueError):
    """A value that cannot be read as its field's type."""


def as_text(raw: object) -> str:
    """A raw value as text: a string as it is, any other JSON value as its JSON text (``true``,
    ``false``, ``{"a": 1}``), a Decimal written out in full (``1E+5`` is ``100000``)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, Decimal):
        return jsonvalues.plain_number(raw)
    if isinstance(raw, dict | list):
        return jsonvalues.dumps(raw)
    return str(raw)


def _blank(raw: object) -> str | None:
    if raw is None:
        return None
    text = _SPACES.sub(" ", as_text(raw)).strip()
    return text or None


def _storable(text: str) -> str:
    """``text``, or FieldError if PostgreSQL cannot store it (a NUL character)."""
    if "\x00" in text:
        raise FieldError(
            f"{_shown(text)} holds the character U+0000 (NUL), which PostgreSQL text cannot store"
        )
    return text


def _shown(text: str, limit: int = 200) -> str:
    """``text`` quoted for a reject reason, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} chars)"


def to_text(raw: object) -> str | None:
    """Text with each run of whitespace as one space, trimmed (``whitespace: collapse``);
    blank is None."""
    text = _blank(raw)
    return None if text is None else _storable(text)


def to_kept_text(raw: object) -> str | None:
    """Text exactly as found (``whitespace: keep``): newlines, tabs and outer spaces kept, a
    string of only whitespace too. The empty string is None: nothing found (``default`` and
    ``required`` apply), as in collapse mode."""
    if raw is None:
        return None
    text = as_text(raw)
    return _storable(text) if text else None


# What a boolean field reads without `true_values` / `false_values` (compared case-insensitively,
# whitespace collapsed). Not 1/0: a number column mapped to a boolean by mistake would load.
TRUE_VALUES = ("true", "yes")
FALSE_VALUES = ("false", "no")


def _fold(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()


def boolean_reader(
    true_values: list[str] | tuple[str, ...] = TRUE_VALUES,
    false_values: list[str] | tuple[str, ...] = FALSE_VALUES,
) -> Callable[[object], bool | None]:
    """The converter of a boolean field: a JSON true/false as it is; text by its spelling
    (case-insensitive), anything else a FieldError naming the value and the spellings."""
    spellings = {_fold(v): True for v in true_values} | {_fold(v): False for v in false_values}
    accepted = (
        f"it reads {', '.join(map(repr, true_values))} as true and "
        f"{', '.join(map(repr, false_values))} as false"
    )

    def read_boolean(raw: object) -> bool | None:
        if raw is None or isinstance(raw, bool):
            return raw
        text = _blank(raw)
        if text is None:
            return None
        found = spellings.get(text.casefold())
        if found is None:
            raise FieldError(f"{_shown(text)} is not a boolean: {accepted}")
        return found

    return read_boolean


to_boolean = boolean_reader()


class JsonText(str):
    """A JSON value's text, every number exact (offpeak.jsonvalues.dumps): a json field's
    value, written to the clean file as it is and loaded into jsonb."""


# PostgreSQL's numeric (and jsonb's numbers): at most 131072 digits before the point, 16383 after.
_NUMERIC_WHOLE, _NUMERIC_SCALE = 131072, 16383


def _numeric_range(value: Decimal, shown: str) -> None:
    if value.adjusted() >= _NUMERIC_WHOLE or -value.as_tuple().exponent > _NUMERIC_SCALE:
        raise FieldError(
            f"{shown} is out of range for PostgreSQL numeric (at most {_NUMERIC_WHOLE} digits "
            f"before the point and {_NUMERIC_SCALE} after)"
        )


def _jsonb_ready(value: Any, shown: str) -> None:
    """FieldError when jsonb cannot hold ``value`` as it is: a NaN or infinite number, a
    number beyond numeric's range, a NUL character in a string or key."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise FieldError(
                    f"{shown} holds the character U+0000 (NUL), which PostgreSQL jsonb cannot store"
                )
        elif isinstance(item, Decimal | float) and not isinstance(item, bool):
            number = Decimal(item) if isinstance(item, float) else item
            if not number.is_finite():
                raise FieldError(f"{shown} holds {item}, which is not a JSON number")
            _numeric_range(number, shown)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def to_json(raw: object) -> JsonText | None:
    """A json field: a string is JSON text and must parse (RFC 8259: no NaN, no repeated key in
    an object); any other value (a JSON object, array, number or boolean in the feed) is the
    value itself. JSON null and blank text are None. The result is the value's exact JSON
    text."""
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            value = jsonvalues.loads_strict(raw)
        except ValueError as exc:
            raise FieldError(f"{_shown(raw.strip())} is not JSON: {exc}") from None
        shown = _shown(raw.strip())
    else:
        value, shown = raw, _shown(as_text(raw))
    if value is None:
        return None
    _jsonb_ready(value, shown)
    return JsonText(jsonvalues.dumps(value))


def _number_text(raw: object) -> tuple[bool, str] | None:
    """Strip currency, grouping, percent and sign; return (negative, digits) or None if blank."""
    text = _blank(raw)
    if text is None:
        return None
    original = text
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1].strip()
    text = text.removesuffix("%").strip()
    if text and text[0] in MINUS_SIGNS + "+":
        negative, text = negative or text[0] != "+", text[1:].strip()
    text = "".join(c for c in text if unicodedata.category(c) != "Sc").strip()
    text = _CODE_PREFIX.sub("", text)
    text = _CODE_SUFFIX.sub("", text)
    if text and text[0] in MINUS_SIGNS:  # "$-1.37" puts the sign after the currency
        negative, text = True, text[1:]
    if not any(c.isdigit() for c in text):  # a heading, a dash, "n/a": no guess at why
        raise FieldError(f"{original!r} is not a number")
    if any(c in _SEPARATORS for c in text):
        if _GROUPED.match(text):
            text = text.translate(_GROUPING)
        elif _NUMBER.match(text.translate(_GROUPING)):
            raise FieldError(
                f"{original!r} is not a number: its digits are grouped irregularly, so the "
                "separator could be a decimal comma or a thousands separator"
            )
        else:
            raise FieldError(f"{original!r} is not a number")
    if not _NUMBER.match(text):
        raise FieldError(f"{original!r} is not a number")
    return negative, text


def to_decimal(raw: object) -> Decimal | None:
    if isinstance(raw, Decimal) and raw.is_finite():  # a JSON number: too long to write out?
        _numeric_range(raw, _shown(str(raw)))
    parsed = _number_text(raw)
    if parsed is None:
        return None
    negative, digits = parsed
    try:
        value = Decimal(digits)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        raise FieldError(f"{raw!r} is not a number") from None
    _numeric_range(value, _shown(as_text(raw)))
    # copy_negate, not -value: unary minus rounds to the context's 28 digits. A zero is
    # written without its sign, as -value did.
    return value.copy_negate() if negative and value else value


def to_int(raw: object) -> int | None:
    parsed = _number_text(raw)
    if parsed is None:
        return None
    negative, digits = parsed
    if "." in digits:
        whole, _, frac = digits.partition(".")
        if frac.strip("0"):
            raise FieldError(f"{_shown(as_text(raw))} is not a whole number")
        digits = whole or "0"
    if len(digits.lstrip("0")) > 19:  # int() of thousands of digits is slow, or refused
        raise FieldError(f"{_shown(as_text(raw))} is out of range for a 64-bit integer")
    value = -int(digits) if negative else int(digits)
    if not -(2**63) <= value <= 2**63 - 1:
        raise FieldError(f"{_shown(as_text(raw))} is out of range for a 64-bit integer")
    return value


def to_date(raw: object) -> date | None:
    text = _blank(raw)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FieldError(f"{text!r} is not a date in the form YYYY-MM-DD") from None


def to_datetime(raw: object) -> datetime | None:
    text = _blank(raw)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError(f"{text!r} is not an ISO 8601 datetime") from None
    if value.tzinfo is None:
        raise FieldError(
            f"{text!r} has no timezone offset (the field's `timezone: region` reads such "
            "times in the region's timezone)"
        )
    return value


CONVERTERS: dict[str, Callable[[object], object]] = {
    "text": to_text,
    "int": to_int,
    "decimal": to_decimal,
    "date": to_date,
    "datetime": to_datetime,
    "boolean": to_boolean,
    "json": to_json,
}


def whitespace(spec: Any, kind: str | None) -> str:
    """A text field's whitespace mode: its own, else ``keep`` on a json_api site (a JSON
    string is kept verbatim) and ``collapse`` on an HTML one (runs of whitespace to one
    space, trimmed: what a browser shows)."""
    mode = getattr(spec, "whitespace", None)
    return mode or ("keep" if kind == "json_api" else "collapse")


# strptime directives that give a day; a format without any (a time such as "16:00 ET") is
# read on the run's trading date.
_DAY_DIRECTIVES = re.compile(r"%[dmyYbBjUWGuVaAcx]")


def _strptime(text: str, formats: list[str], what: str) -> datetime:
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt)  # noqa: DTZ007 - localised by the caller
        except ValueError:
            continue
    shown = ", ".join(f'"{f}"' for f in formats)
    raise FieldError(f"{text!r} is not a {what} in the format{'s' * (len(formats) > 1)} {shown}")


def local_time(value: datetime, zone: str, text: str) -> datetime:
    """``value`` (a wall-clock time) in ``zone``; a time the clocks skipped or passed twice
    (a daylight-saving change) is refused, never guessed."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    first, second = value.replace(tzinfo=tz, fold=0), value.replace(tzinfo=tz, fold=1)
    before, after = first.utcoffset(), second.utcoffset()
    if before != after:
        if before > after:  # type: ignore[operator]
            raise FieldError(
                f"{text!r} is ambiguous in {zone}: the clocks went back that night and the "
                "time happened twice"
            )
        raise FieldError(
            f"{text!r} does not exist in {zone}: the clocks went forward past it that night"
        )
    return first


def field_converter(
    spec: Any,
    zone: str | None = None,
    trading_date: date | None = None,
    kind: str | None = None,
) -> Callable[[object], object]:
    """The converter of one field (offpeak.config.FieldSpec): its type's, or, for a date or
    datetime with ``formats`` or a ``timezone``, one that reads those; a text field's follows
    its ``whitespace`` (whose default depends on the site's ``kind``), a boolean's its
    spellings. ``zone`` is the region's timezone (for ``timezone: region``), ``trading_date``
    the run's (for a format without a day)."""
    if spec.type == "text":
        return to_text if whitespace(spec, kind) == "collapse" else to_kept_text
    if spec.type == "boolean":
        true_values = getattr(spec, "true_values", None) or TRUE_VALUES
        false_values = getattr(spec, "false_values", None) or FALSE_VALUES
        return boolean_reader(true_values, false_values)
    formats = list(spec.formats or ())
    if spec.type == "date" and formats:

        def read_date(raw: object) -> date | None:
            text = _blank(raw)
            return None if text is None else _strptime(text, formats, "date").date()

        return read_date
    if spec.type != "datetime" or not (formats or spec.timezone):
        return CONVERTERS[spec.type]
    tz_name = zone if spec.timezone == "region" else spec.timezone
    if spec.timezone == "region" and not zone:
        raise ValueError(f"a field with `timezone: region` needs the region's timezone ({spec})")

    def read_datetime(raw: object) -> datetime | None:
        text = _blank(raw)
        if text is None:
            return None
        if formats:
            value = _strptime(text, formats, "datetime")
            if not any(_DAY_DIRECTIVES.search(f) for f in formats):
                if trading_date is None:
                    raise FieldError(f"{text!r} has no day, and no trading date is known")
                value = datetime.combine(trading_date, value.time())
        else:
            try:
                value = datetime.fromisoformat(text)
            except ValueError:
                raise FieldError(f"{text!r} is not an ISO 8601 datetime") from None
        if value.tzinfo is not None:
            return value
        if tz_name is None:
            raise FieldError(f"{text!r} has no timezone offset")
        return local_time(value, tz_name, text)

    return read_datetime
