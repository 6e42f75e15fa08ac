"""Unit tests for plugins/offpeak/normalize.py: raw scraped strings to typed values."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from offpeak import jsonvalues
from offpeak.config import FieldSpec
from offpeak.pipeline.normalize import (
    FieldError,
    field_converter,
    to_boolean,
    to_date,
    to_datetime,
    to_decimal,
    to_int,
    to_json,
    to_kept_text,
    to_text,
    whitespace,
)


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


# --------------------------------------------------------------------------- issue 22: types kept


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True), (False, False), ("true", True), ("False", False), (" YES ", True),
        ("no", False), ("", None), ("  ", None), (None, None),
    ],
)  # fmt: skip
def test_to_boolean_reads_json_booleans_and_the_default_spellings(raw, expected):
    assert to_boolean(raw) is expected


@pytest.mark.parametrize("raw", ["1", 0, "maybe", "y", Decimal("1.0"), {"a": 1}])
def test_to_boolean_rejects_other_values_naming_the_spellings(raw):
    with pytest.raises(FieldError) as info:
        to_boolean(raw)
    assert str(info.value).endswith(
        "is not a boolean: it reads 'true', 'yes' as true and 'false', 'no' as false"
    )


def test_a_boolean_field_reads_its_own_spellings_only():
    spec = FieldSpec(
        type="boolean", css="td", true_values=["\u2713", "Ja"], false_values=["\u2717"]
    )
    convert = field_converter(spec)
    assert [convert(v) for v in ("\u2713", " ja ", "\u2717", True, None)] == [
        True, True, False, True, None,
    ]  # fmt: skip
    with pytest.raises(FieldError, match=r"^'yes' is not a boolean: it reads '✓', 'Ja' as true"):
        convert("yes")


NESTED = '{"b": [1, 2.50, {"c": null}], "a": "x\\ny"}'
LONG = "0.1000000000000000055511151231257827"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (NESTED, NESTED),
        ("  [ ]  ", "[]"),
        ('"text"', '"text"'),
        ("12345678901234567890.123456789", "12345678901234567890.123456789"),
        ("0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827"),
        ("18446744073709551617", "18446744073709551617"),
        ("false", "false"),
        ({"n": Decimal(LONG), "t": True}, f'{{"n": {LONG}, "t": true}}'),
        ([1, "é"], '[1, "é"]'),
        ("null", None), (None, None), ("", None), (" \n", None),
    ],
)  # fmt: skip
def test_to_json_keeps_any_json_value_exactly(raw, expected):
    value = to_json(raw)
    assert value == expected
    if expected is not None:
        assert json.loads(value, parse_float=Decimal) == json.loads(expected, parse_float=Decimal)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{'a': 1}", "is not JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2", "is not JSON: Expecting ',' delimiter"),
        ("NaN", "is not JSON: NaN is not a JSON value (RFC 8259 has no NaN or Infinity)"),
        ('{"a": -Infinity}', "is not JSON: -Infinity is not a JSON value"),
        ('{"a": 1, "a": 2}', "is not JSON: key 'a' is given twice in one object"),
        ('["\\u0000"]', "holds the character U+0000 (NUL), which PostgreSQL jsonb cannot store"),
        ({"a": Decimal("NaN")}, "holds NaN, which is not a JSON number"),
        ("1e200000", "is out of range for PostgreSQL numeric"),
        ("yes", "is not JSON: Expecting value"),
    ],
)
def test_to_json_rejects_what_is_not_json_or_jsonb_cannot_hold(raw, reason):
    with pytest.raises(FieldError, match=re.escape(reason)):
        to_json(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  two  spaces\n", "  two  spaces\n"), ("a\r\nb", "a\r\nb"), ("\tx", "\tx"),
        ("", None), (" \n\t", " \n\t"), ("\u00a0", "\u00a0"), (None, None),
        (True, "true"), (False, "false"), (12, "12"), (Decimal("1E+5"), "100000"),
        ({"k": [1, Decimal("2.50")]}, '{"k": [1, 2.50]}'),
    ],
)  # fmt: skip
def test_kept_text_is_the_string_exactly_and_only_the_empty_string_is_null(raw, expected):
    assert to_kept_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, "true"), (False, "false"), (Decimal("1E-7"), "0.0000001"), ([1, "a"], '[1, "a"]')],
)
def test_collapsed_text_of_a_json_value_is_its_json_text(raw, expected):
    assert to_text(raw) == expected


@pytest.mark.parametrize("convert", [to_text, to_kept_text])
def test_text_with_a_nul_character_is_refused_not_cut(convert):
    with pytest.raises(FieldError, match=r"^'a\\x00b' holds the character U\+0000 \(NUL\)"):
        convert("a\x00b")


def test_whitespace_defaults_to_keep_on_json_api_and_collapse_on_html():
    text = FieldSpec(type="text", path="x")
    assert whitespace(text, "json_api") == "keep"
    assert whitespace(text, "html_table") == whitespace(text, "listing_detail") == "collapse"
    assert whitespace(FieldSpec(type="text", path="x", whitespace="collapse"), "json_api") == (
        "collapse"
    )
    assert field_converter(text, kind="json_api")(" a\nb ") == " a\nb "
    assert field_converter(text, kind="html_table")(" a\nb ") == "a b"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (Decimal("0.1000000000000000055511151231257827"), "0.1000000000000000055511151231257827"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        ("-12345678901234567890.123456789", "-12345678901234567890.123456789"),
        (Decimal("1E+5"), "100000"),
        (Decimal("1E-7"), "1E-7"),  # 0.0000001, as PostgreSQL's numeric reads it
        (12345678901234567890123, "12345678901234567890123"),
    ],
)
def test_decimals_keep_every_digit(raw, expected):
    """No float and no 28-digit rounding on the way: a negative number was rounded by -x."""
    assert str(to_decimal(raw)) == expected


def test_an_int_beyond_2_to_the_53_is_exact():
    assert to_int(2**53 + 1) == 9007199254740993
    assert to_int(Decimal("9007199254740993.0")) == 9007199254740993
    with pytest.raises(FieldError, match="out of range for a 64-bit integer"):
        to_int("1" * 5000)


@pytest.mark.parametrize(
    "raw", [Decimal("1E+200000"), "0." + "0" * 16383 + "1"], ids=["huge", "long"]
)
def test_a_decimal_numeric_cannot_hold_is_a_reject(raw):
    with pytest.raises(FieldError, match="out of range for PostgreSQL numeric"):
        to_decimal(raw)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 0.1000000000000000055511151231257827, "b": [12345678901234567890.123456789]}',
        "[9007199254740993, 1E+400, -0.0, 2.50, true, null]",
        '{"s": "line\\nbreak \\u00e9 \\ud83d\\ude00"}',
    ],
)
def test_jsonvalues_round_trip_every_digit(text):
    value = jsonvalues.loads(text)
    assert jsonvalues.loads(jsonvalues.dumps(value)) == value
    assert jsonvalues.dumps(value) == jsonvalues.dumps(jsonvalues.loads(jsonvalues.dumps(value)))
    assert "0.1000000000000000055511151231257827" in jsonvalues.dumps(jsonvalues.loads(
        '{"x": 0.1000000000000000055511151231257827}'
    ))  # fmt: skip
