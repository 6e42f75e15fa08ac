"""Unit tests for plugins/offpeak/normalize.py: raw scraped strings to typed values."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from offpeak.pipeline.normalize import FieldError, to_date, to_datetime, to_decimal, to_int, to_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$1,234.50", Decimal("1234.50")),
        ("(1.37)", Decimal("-1.37")),
        ("-1.37", Decimal("-1.37")),
        ("\u22121.37", Decimal("-1.37")),  # Unicode minus sign
        ("$-1.37", Decimal("-1.37")),  # sign after the currency symbol
        ("+0.52", Decimal("0.52")),
        ("-0.45%", Decimal("-0.45")),
        ("(0.45%)", Decimal("-0.45")),
        ("€12.07", Decimal("12.07")),
        ("A$45.10", Decimal("45.10")),
        ("₹2,315.40", Decimal("2315.40")),
        ("¥3,400", Decimal("3400")),
        ("1.0823", Decimal("1.0823")),
        ("CHF 12.50", Decimal("12.50")),
        ("12.50 EUR", Decimal("12.50")),
        ("kr 26.54", Decimal("26.54")),
        ("Rs. 9", Decimal("9")),
        ("1\u00a0234.5", Decimal("1234.5")),  # no-break space as thousands separator
        (".5", Decimal("0.5")),
        ("", None),
        (None, None),
        ("  ", None),
        ("\n\t", None),
    ],
)
def test_to_decimal_reads_money_percent_and_signs(raw, expected):
    value = to_decimal(raw)
    assert value == expected
    if expected is not None:
        # Trailing zeros survive: "1234.50" is loaded as written, not as 1234.5.
        assert str(value) == str(expected)


@pytest.mark.parametrize("raw", ["n/a", "--", "abc", "—", "-", "USD", "1e5", "1."])
def test_to_decimal_rejects_non_numbers_naming_the_value(raw):
    with pytest.raises(FieldError, match="not a number") as info:
        to_decimal(raw)
    assert repr(raw) in str(info.value)


def test_field_error_is_a_value_error():
    # Callers that only know ValueError still catch it.
    with pytest.raises(ValueError, match="'n/a' is not a number"):
        to_decimal("n/a")


def test_a_heading_is_not_a_number_without_a_guess_at_why():
    # A header row's text read as a number: the reason says what was seen, not a guess.
    with pytest.raises(FieldError) as info:
        to_decimal("% Chg")
    assert str(info.value) == "'% Chg' is not a number"


def test_to_decimal_lone_percent_sign_is_a_field_error():
    # An empty percent cell must be a rejected value, not an IndexError that stops transform.
    with pytest.raises(FieldError, match="'%' is not a number"):
        to_decimal("%")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12,34,567.89", Decimal("1234567.89")),  # Indian lakh grouping
        ("1'234.5", Decimal("1234.5")),  # Swiss apostrophe grouping
        ("1 234 567", Decimal("1234567")),
    ],
)
def test_to_decimal_reads_grouping_styles(raw, expected):
    assert to_decimal(raw) == expected


@pytest.mark.parametrize("raw", ["1,5", "1 234,5", "1,23", "1,2345", "1,234 567"])
def test_to_decimal_refuses_ambiguous_grouping(raw):
    # A decimal comma or a misplaced separator is refused rather than read as a bigger number.
    with pytest.raises(
        FieldError, match="is not a number: its digits are grouped irregularly"
    ) as info:
        to_decimal(raw)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize("raw", ["1.2bn", "$1.2 bn", "3.4 mn", "₹2.5 Cr", "x0", "abc1"])
def test_to_decimal_does_not_drop_magnitude_words(raw):
    # Refusing the value is right; reading "1.2bn" as 1.2 would divide it by a billion.
    with pytest.raises(FieldError, match="not a number"):
        to_decimal(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,234,567", 1234567),
        ("$12,345,678", 12345678),
        ("12.0", 12),
        ("-42", -42),
        ("(7)", -7),
        (str(2**63 - 1), 2**63 - 1),
        ("", None),
        (None, None),
    ],
)
def test_to_int(raw, expected):
    assert to_int(raw) == expected


def test_to_int_rejects_fractions():
    with pytest.raises(FieldError, match=r"'1\.5' is not a whole number"):
        to_int("1.5")


def test_to_int_rejects_values_beyond_bigint():
    with pytest.raises(FieldError, match="out of range for a 64-bit integer"):
        to_int(str(2**63))


def test_to_int_accepts_smallest_bigint():
    assert to_int(str(-(2**63))) == -(2**63)
    with pytest.raises(FieldError, match="out of range"):
        to_int(str(-(2**63) - 1))


def test_to_int_rejects_text():
    with pytest.raises(FieldError, match="'n/a' is not a number"):
        to_int("n/a")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\n  Nestlé  \n", "Nestlé"),
        ("Acme \t  Corp\nLtd", "Acme Corp Ltd"),
        ("   ", None),
        ("", None),
        (None, None),
        (42, "42"),
    ],
)
def test_to_text_collapses_whitespace(raw, expected):
    assert to_text(raw) == expected


def test_to_date():
    assert to_date("2026-11-20") == date(2026, 11, 20)
    assert to_date(" 2026-11-20 \n") == date(2026, 11, 20)
    assert to_date("") is None
    assert to_date(None) is None


@pytest.mark.parametrize("raw", ["20/11/2026", "2026-13-01", "Nov 20, 2026"])
def test_to_date_rejects_other_formats(raw):
    with pytest.raises(FieldError, match="is not a date in the form YYYY-MM-DD") as info:
        to_date(raw)
    assert repr(raw) in str(info.value)


def test_to_datetime_keeps_the_offset():
    value = to_datetime("2026-11-20T16:59:58+05:30")
    assert value == datetime(2026, 11, 20, 16, 59, 58, tzinfo=timezone(timedelta(hours=5.5)))
    assert value.utcoffset() == timedelta(hours=5, minutes=30)
    assert value.isoformat() == "2026-11-20T16:59:58+05:30"


def test_to_datetime_reads_z_as_utc():
    assert to_datetime("2026-11-20T11:29:58Z").utcoffset() == timedelta(0)


def test_to_datetime_blank_is_none():
    assert to_datetime("  ") is None
    assert to_datetime(None) is None


def test_to_datetime_rejects_naive_values():
    with pytest.raises(FieldError, match="no timezone offset") as info:
        to_datetime("2026-11-20T16:59:58")
    assert "2026-11-20T16:59:58" in str(info.value)


def test_to_datetime_rejects_garbage():
    with pytest.raises(FieldError, match="'not-a-date' is not an ISO 8601 datetime"):
        to_datetime("not-a-date")
