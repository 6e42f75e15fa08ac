"""Turn the raw strings a spider scraped into typed values, or say exactly why not."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

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
_MINUS_SIGNS = "-\u2212\u2012\u2013"


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
    if text and text[0] in _MINUS_SIGNS + "+":
        negative, text = negative or text[0] != "+", text[1:].strip()
    text = "".join(c for c in text if unicodedata.category(c) != "Sc").strip()
    text = _CODE_PREFIX.sub("", text)
    text = _CODE_SUFFIX.sub("", text)
    if text and text[0] in _MINUS_SIGNS:  # "$-1.37" puts the sign after the currency
        negative, text = True, text[1:]
    if any(c in _SEPARATORS for c in text):
        if not _GROUPED.match(text):
            raise FieldError(f"not a number (ambiguous digit grouping): {original!r}")
        text = text.translate(_GROUPING)
    if not _NUMBER.match(text):
        raise FieldError(f"not a number: {original!r}")
    return negative, text


def to_decimal(raw: object) -> Decimal | None:
    parsed = _number_text(raw)
    if parsed is None:
        return None
    negative, digits = parsed
    try:
        value = Decimal(digits)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        raise FieldError(f"not a number: {raw!r}") from None
    return -value if negative else value


def to_int(raw: object) -> int | None:
    parsed = _number_text(raw)
    if parsed is None:
        return None
    negative, digits = parsed
    if "." in digits:
        whole, _, frac = digits.partition(".")
        if frac.strip("0"):
            raise FieldError(f"not a whole number: {raw!r}")
        digits = whole or "0"
    value = -int(digits) if negative else int(digits)
    if not -(2**63) <= value <= 2**63 - 1:
        raise FieldError(f"out of range for a 64-bit integer: {raw!r}")
    return value


def to_date(raw: object) -> date | None:
    text = _blank(raw)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FieldError(f"not a YYYY-MM-DD date: {text!r}") from None


def to_datetime(raw: object) -> datetime | None:
    text = _blank(raw)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError(f"not an ISO-8601 datetime: {text!r}") from None
    if value.tzinfo is None:
        raise FieldError(f"datetime has no timezone offset: {text!r}")
    return value


CONVERTERS: dict[str, Callable[[object], object]] = {
    "text": to_text,
    "int": to_int,
    "decimal": to_decimal,
    "date": to_date,
    "datetime": to_datetime,
}
