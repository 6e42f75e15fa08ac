"""Turn the raw strings a spider scraped into typed values, or say exactly why not."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

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


def _blank(raw: object) -> str | None:
    if raw is None:
        return None
    text = _SPACES.sub(" ", str(raw)).strip()
    return text or None


def to_text(raw: object) -> str | None:
    return _blank(raw)


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
    parsed = _number_text(raw)
    if parsed is None:
        return None
    negative, digits = parsed
    try:
        value = Decimal(digits)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        raise FieldError(f"{raw!r} is not a number") from None
    return -value if negative else value


def to_int(raw: object) -> int | None:
    parsed = _number_text(raw)
    if parsed is None:
        return None
    negative, digits = parsed
    if "." in digits:
        whole, _, frac = digits.partition(".")
        if frac.strip("0"):
            raise FieldError(f"{raw!r} is not a whole number")
        digits = whole or "0"
    value = -int(digits) if negative else int(digits)
    if not -(2**63) <= value <= 2**63 - 1:
        raise FieldError(f"{raw!r} is out of range for a 64-bit integer")
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
}


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
    spec: Any, zone: str | None = None, trading_date: date | None = None
) -> Callable[[object], object]:
    """The converter of one field (offpeak.config.FieldSpec): its type's, or, for a date or
    datetime with ``formats`` or a ``timezone``, one that reads those. ``zone`` is the
    region's timezone (for ``timezone: region``), ``trading_date`` the run's (for a format
    without a day)."""
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
