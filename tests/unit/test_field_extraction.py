"""How a field's value is taken from a page (re, join, negative_when, default, const) and read
as its type (formats, timezone), and the config errors that name the field."""

from __future__ import annotations

from datetime import date

import pytest
from parsel import Selector

from offpeak.config import FieldSpec
from offpeak.pipeline.normalize import MINUS_SIGNS, FieldError, field_converter
from offpeak.scraping.siteconfig import Locator
from offpeak.scraping.spiders.fields import NEGATIVE_STARTS, FieldReader

ROW = """<table><tr>
  <td class="co">Berkshire Hathaway Inc. (Class B) (BRK.B)</td>
  <td class="chg nnum">0.85</td><td class="pct pnum">0.27%</td><td class="acct nnum">(0.12)</td>
  <td class="multi"><b>New</b> <i>York</i></td><td class="blank">  </td>
</tr></table>"""


def read(html: str = ROW, **locator) -> str | None:
    row = Selector(text=html).css("tr")[0]
    return FieldReader(Locator(**locator))(row)


def test_re_takes_the_first_group_and_a_name_may_hold_parentheses():
    name = read(css="td.co::text", re=r"^(.*?)\s*\([A-Z.]+\)\s*$")
    assert name == "Berkshire Hathaway Inc. (Class B)"
    assert read(css="td.co::text", re=r"\(([A-Z.]+)\)\s*$") == "BRK.B"
    # Without a group, the whole match; no match is nothing found.
    assert read(css="td.co::text", re=r"[A-Z]{3}\.[A-Z]") == "BRK.B"
    assert read(css="td.co::text", re=r"\((\d+)\)") is None


def test_negative_when_a_class_marks_the_sign():
    assert read(css="td.chg::text", negative_when="td.chg.nnum") == "-0.85"
    assert read(css="td.pct::text", negative_when="td.pct.nnum") == "0.27%"
    # A value already written negative is not negated twice.
    assert read(css="td.acct::text", negative_when="td.acct.nnum") == "(0.12)"
    # Nor one written with any minus sign the number reader knows (here an en dash).
    dashed = ROW.replace('class="chg nnum">0.85', 'class="chg nnum">\u20130.85')
    assert read(dashed, css="td.chg::text", negative_when="td.chg.nnum") == "\u20130.85"
    assert set(NEGATIVE_STARTS) == {*MINUS_SIGNS, "("}  # the spider's list is the reader's


def test_matches_are_joined_by_join_and_blank_text_is_nothing():
    both = "td.multi b::text, td.multi i::text"
    assert read(css=both) == "New York"
    assert read(css=both, join="/") == "New/York"
    assert read(css="td.blank::text") is None
    # An XPath string function that finds nothing returns "": nothing found, not a value.
    assert read(xpath="substring-before(td[@class='co'], '[')") is None
    assert read(xpath="substring-before(td[@class='co'], ' (')") == "Berkshire Hathaway Inc."


def test_an_attribute_is_read_class_names_included():
    assert read(css="td.chg::attr(class)") == "chg nnum"
    assert read(xpath="td[2]/@class", re=r"\b([np]num)\b") == "nnum"


@pytest.mark.parametrize(
    ("formats", "raw", "expected"),
    [
        (["%b %d, %Y"], "May 31, 2013", date(2013, 5, 31)),
        (["%b %d, %Y", "%d.%m.%Y"], "31.05.2013", date(2013, 5, 31)),
        (["%m/%d/%y"], "05/31/13", date(2013, 5, 31)),
        (["%m/%d/%y"], "05/31/69", date(1969, 5, 31)),  # POSIX pivot: 69-99 are 19xx
        (["%m/%d/%y"], "05/31/68", date(2068, 5, 31)),
        (["%d %B %Y"], "31 May 2013", date(2013, 5, 31)),
        (["%d %B %Y"], "  ", None),
    ],
)
def test_dates_are_read_in_the_formats_the_site_prints(formats, raw, expected):
    spec = FieldSpec(type="date", css="td", formats=formats)
    assert field_converter(spec)(raw) == expected


def test_a_date_in_no_listed_format_is_a_reject_naming_the_formats():
    spec = FieldSpec(type="date", css="td", formats=["%b %d, %Y", "%d.%m.%Y"])
    with pytest.raises(FieldError) as info:
        field_converter(spec)("2013-31-05")
    assert str(info.value) == '\'2013-31-05\' is not a date in the formats "%b %d, %Y", "%d.%m.%Y"'


def test_a_local_time_is_read_in_the_regions_zone_dst_correct():
    spec = FieldSpec(type="datetime", css="td", formats=["%Y-%m-%d %H:%M"], timezone="region")
    convert = field_converter(spec, "America/New_York")
    assert convert("2026-08-04 16:00").isoformat() == "2026-08-04T16:00:00-04:00"  # EDT
    assert convert("2026-12-04 16:00").isoformat() == "2026-12-04T16:00:00-05:00"  # EST


def test_a_time_without_a_day_is_read_on_the_trading_date():
    spec = FieldSpec(type="datetime", css="td", formats=["%H:%M ET"], timezone="region")
    convert = field_converter(spec, "America/New_York", date(2026, 8, 4))
    assert convert("16:00 ET").isoformat() == "2026-08-04T16:00:00-04:00"


def test_a_skipped_or_repeated_local_time_is_a_reject_not_a_guess():
    spec = FieldSpec(type="datetime", css="td", timezone="Europe/London")
    convert = field_converter(spec)
    with pytest.raises(FieldError) as gap:
        convert("2026-03-29T01:30:00")
    assert str(gap.value) == (
        "'2026-03-29T01:30:00' does not exist in Europe/London: the clocks went forward past "
        "it that night"
    )
    with pytest.raises(FieldError) as twice:
        convert("2026-10-25T01:30:00")
    assert "is ambiguous in Europe/London: the clocks went back" in str(twice.value)
    # An offset given by the site is kept as given.
    assert convert("2026-10-25T01:30:00+00:00").isoformat() == "2026-10-25T01:30:00+00:00"


def test_without_a_timezone_a_datetime_needs_its_offset():
    convert = field_converter(FieldSpec(type="datetime", css="td"))
    with pytest.raises(FieldError, match="has no timezone offset"):
        convert("2026-08-04T16:00:00")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "text", "css": "td", "re": "(unclosed"}, "invalid regular expression"),
        ({"type": "text", "css": "td", "re": "(a)(b)"}, "has 2 groups"),
        ({"type": "int", "css": "td", "formats": ["%Y"]}, "formats needs type date or datetime"),
        ({"type": "text", "css": "td", "negative_when": "td.n"}, "needs type int or decimal"),
        ({"type": "date", "css": "td", "formats": ["May"]}, "has no strptime directive"),
        ({"type": "date", "css": "td", "timezone": "region"}, "timezone needs type datetime"),
        ({"type": "datetime", "css": "td", "timezone": "Mars/Base"}, "unknown IANA timezone"),
        (
            {"type": "text", "const": "X", "css": "td"},
            "exactly one of css, xpath, path, column or const",
        ),
        ({"type": "text", "const": "X", "default": "Y"}, "re and default do not apply"),
    ],
)
def test_config_errors_say_what_is_wrong_with_the_field(spec, message):
    with pytest.raises(ValueError, match=message):
        FieldSpec(**spec)
