"""Unit tests for plugins/offpeak/tradingtime.py: windows, DST policy and trading dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from offpeak.config import Region, load_project
from offpeak.params import ignore_window, trading_date
from offpeak.schedule.calendars import UnknownExchange, get_calendar
from offpeak.schedule.tradingtime import NotATradingDay, RegionClock

NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
REGIONS = load_project().regions
AMERICAS = RegionClock.of(REGIONS["americas"])
OCEANIA = RegionClock.of(REGIONS["oceania"])
INDIA = RegionClock.of(REGIONS["india"])
# A window that opens after midnight belongs to the previous local day's session.
EARLY = RegionClock("early", "Asia/Tokyo", "XTKS", time(2, 0), time(6, 0))

# 2026-11-20 is a Friday; 2026-11-26 is Thanksgiving (NYSE closed).
FRIDAY = date(2026, 11, 20)
MONDAY = date(2026, 11, 23)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- DST policy


NY_ZONE, LONDON, SYDNEY = "America/New_York", "Europe/London", "Australia/Sydney"


@pytest.mark.parametrize(
    ("zone", "day", "at", "expected_utc", "why"),
    [
        (NY_ZONE, date(2027, 3, 14), time(2, 30), utc(2027, 3, 14, 7, 30), "gap: 03:30 EDT"),
        (NY_ZONE, date(2027, 11, 7), time(1, 30), utc(2027, 11, 7, 5, 30), "repeat: EDT"),
        (LONDON, date(2027, 3, 28), time(1, 30), utc(2027, 3, 28, 1, 30), "gap: 02:30 BST"),
        (LONDON, date(2027, 10, 31), time(1, 30), utc(2027, 10, 31, 0, 30), "repeat: BST"),
        (SYDNEY, date(2027, 10, 3), time(2, 30), utc(2027, 10, 2, 16, 30), "gap: 03:30 AEDT"),
        (SYDNEY, date(2027, 4, 4), time(2, 30), utc(2027, 4, 3, 15, 30), "repeat: AEDT"),
        ("Asia/Kolkata", date(2027, 6, 1), time(16, 30), utc(2027, 6, 1, 11, 0), "UTC+05:30"),
    ],
)
def test_local_times_follow_the_dst_policy(zone, day, at, expected_utc, why):
    """Skipped local times move forward by the gap; repeated ones are the first occurrence."""
    clock = RegionClock("t", zone, "XNYS", time(18), time(6))
    assert clock.local(day, at) == expected_utc, why


def test_window_open_keeps_local_time_across_dst_in_both_hemispheres():
    # New York: Friday before the 2027-03-14 change is EST (UTC-5), the Monday after EDT (UTC-4).
    assert AMERICAS.window_open(date(2027, 3, 12)) == utc(2027, 3, 12, 23, 30)
    assert AMERICAS.window_open(date(2027, 3, 15)) == utc(2027, 3, 15, 22, 30)
    # Sydney leaves DST on 2027-04-04: AEDT (UTC+11) before, AEST (UTC+10) after.
    assert OCEANIA.window_open(date(2027, 4, 1)) == utc(2027, 4, 1, 6, 30)
    assert OCEANIA.window_open(date(2027, 4, 5)) == utc(2027, 4, 5, 7, 30)
    # Kolkata: half-hour offset, no DST.
    assert INDIA.window_open(date(2027, 3, 15)) == utc(2027, 3, 15, 11, 0)


def test_window_in_a_skipped_and_a_repeated_hour():
    """Cairo changes clocks on weekdays: midnight Friday 2027-04-30 does not exist, 23:00-24:00
    on Thursday 2027-10-28 happens twice. (Zone and calendar are paired only for this test.)"""
    after_midnight = RegionClock("t", "Africa/Cairo", "XNYS", time(0, 30), time(6, 0))
    # Thursday 2027-04-29's window opens Friday 00:30, which is skipped: 01:30 EEST.
    opens = after_midnight.window_open(date(2027, 4, 29))
    assert opens == utc(2027, 4, 29, 22, 30)
    assert opens.astimezone(after_midnight.tz).strftime("%H:%M %Z") == "01:30 EEST"
    # The trading day 2027-04-30 starts at the first instant of that date: 01:00 EEST, 23 h long.
    start, end = after_midnight.data_interval(date(2027, 4, 30))
    assert start.astimezone(after_midnight.tz).date() == date(2027, 4, 30)
    assert (end - start).total_seconds() == 23 * 3600

    evening = RegionClock("t", "Africa/Cairo", "XNYS", time(23, 30), time(6, 0))
    opens = evening.window_open(date(2027, 10, 28))
    assert opens == utc(2027, 10, 28, 20, 30)  # the first 23:30, still EEST (UTC+3)
    start, end = evening.data_interval(date(2027, 10, 28))
    assert (end - start).total_seconds() == 25 * 3600


# ---------------------------------------------------------------- windows


def test_current_window_crosses_midnight():
    opens, closes = AMERICAS.current_window(datetime(2026, 11, 21, 3, 0, tzinfo=NY))
    assert opens == datetime(2026, 11, 20, 18, 30, tzinfo=NY)
    assert closes == datetime(2026, 11, 21, 7, 30, tzinfo=NY)
    assert AMERICAS.current_window(datetime(2026, 11, 21, 7, 30, tzinfo=NY)) is None  # end excl.
    assert AMERICAS.current_window(datetime(2026, 11, 20, 12, 0, tzinfo=NY)) is None


def test_next_window_open_is_today_or_tomorrow():
    noon = datetime(2026, 11, 20, 12, 0, tzinfo=NY)
    assert AMERICAS.next_window_open(noon) == datetime(2026, 11, 20, 18, 30, tzinfo=NY)
    late = datetime(2026, 11, 20, 18, 30, tzinfo=NY)
    assert AMERICAS.next_window_open(late) == datetime(2026, 11, 21, 18, 30, tzinfo=NY)


def test_last_window_open_is_the_window_now_is_in_or_the_one_before():
    """What a resumable crawl's state is dated by: the same instant all through one window
    and until the next opens; a crawl killed at 03:00 and retried at 07:00 share it."""
    friday_evening = datetime(2026, 11, 20, 18, 30, tzinfo=NY)
    for now in (friday_evening, datetime(2026, 11, 21, 3, 0, tzinfo=NY),
                datetime(2026, 11, 21, 12, 0, tzinfo=NY)):  # fmt: skip
        assert AMERICAS.last_window_open(now) == friday_evening, now
    next_one = datetime(2026, 11, 21, 18, 30, tzinfo=NY)
    assert AMERICAS.last_window_open(next_one) == next_one
    assert EARLY.last_window_open(datetime(2026, 11, 21, 1, 0, tzinfo=TOKYO)) == datetime(
        2026, 11, 20, 2, 0, tzinfo=TOKYO
    )


def test_window_text_shows_seconds_only_when_set():
    assert AMERICAS.window_text() == "18:30–07:30"
    assert RegionClock("t", "UTC", "XNYS", time(9, 0, 5), time(10)).window_text() == (
        "09:00:05–10:00:00"
    )


# ---------------------------------------------------------------- trading days


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 20, 18, 29, tzinfo=NY), date(2026, 11, 19)),  # Fri before window
        (datetime(2026, 11, 20, 18, 30, tzinfo=NY), FRIDAY),  # Fri at window open
        (datetime(2026, 11, 22, 23, 0, tzinfo=NY), FRIDAY),  # Sunday night
        (datetime(2026, 11, 23, 14, 0, tzinfo=UTC), FRIDAY),  # Monday 09:00 NY, given in UTC
        (datetime(2026, 11, 23, 19, 0, tzinfo=NY), MONDAY),  # Monday after window open
        (datetime(2026, 11, 27, 10, 0, tzinfo=NY), date(2026, 11, 25)),  # after Thanksgiving
    ],
)
def test_latest_due_day_skips_weekends_and_holidays(now, expected):
    assert AMERICAS.latest_due_day(now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 21, 1, 59, tzinfo=TOKYO), date(2026, 11, 19)),  # before Sat window
        (datetime(2026, 11, 21, 2, 0, tzinfo=TOKYO), FRIDAY),  # Saturday's window is Friday's
        (datetime(2026, 11, 24, 3, 0, tzinfo=TOKYO), FRIDAY),  # Mon 23rd is a JPX holiday
        (datetime(2026, 11, 25, 2, 0, tzinfo=TOKYO), date(2026, 11, 24)),
    ],
)
def test_latest_due_day_for_a_window_after_midnight(now, expected):
    assert EARLY.latest_due_day(now) == expected


@pytest.mark.parametrize(
    ("logical_date", "expected"),
    [
        (datetime(2026, 11, 20, 0, 0, tzinfo=NY), FRIDAY),  # the scheduler's own logical date
        (utc(2026, 11, 20), FRIDAY),  # a plain date given to the UI/CLI/API (UTC midnight)
        (utc(2026, 11, 21), FRIDAY),  # a Saturday: the session before it
        (utc(2026, 11, 26), date(2026, 11, 25)),  # Thanksgiving
        (utc(2026, 11, 24, 12, 34, 56), MONDAY),  # "now" (Tue 07:34 NY): latest opened session
    ],
)
def test_trading_day_of_a_manual_logical_date(logical_date, expected):
    assert AMERICAS.trading_day_of(logical_date) == expected


def test_trading_day_of_utc_midnight_east_of_utc():
    tokyo = RegionClock.of(REGIONS["asia_pacific"])
    # 2026-11-20T00:00Z is 09:00 in Tokyo; it still means the trading date 2026-11-20.
    assert tokyo.trading_day_of(utc(2026, 11, 20)) == FRIDAY
    assert tokyo.trading_day_of(datetime(2026, 11, 20, tzinfo=TOKYO)) == FRIDAY


def context(conf=None, start=None) -> dict:
    return {"dag_run": SimpleNamespace(conf=conf), "data_interval_start": start}


def test_context_conf_trading_date_wins():
    ctx = context({"trading_date": "2026-11-18"}, utc(2026, 11, 20, 5))
    assert trading_date(REGIONS["americas"], ctx) == date(2026, 11, 18)


def test_context_trading_date_is_the_local_date_of_the_interval_start():
    # The timetable's interval for 2026-11-20 in Kolkata starts 2026-11-19T18:30Z.
    ctx = context({}, utc(2026, 11, 19, 18, 30))
    assert trading_date(REGIONS["india"], ctx) == FRIDAY


def test_context_without_dates_is_the_latest_due_day():
    """A REST run with "logical_date": null has no interval and no ds: not a crash."""
    now = datetime(2026, 11, 23, 9, 0, tzinfo=NY)
    assert trading_date(REGIONS["americas"], context({}, None), now) == FRIDAY
    assert trading_date(REGIONS["americas"], {}, now) == FRIDAY


@pytest.mark.parametrize("bad", ["20/11/2026", "yesterday", "2026-02-30"])
def test_context_bad_conf_trading_date_is_named(bad):
    with pytest.raises(ValueError, match="trading_date must be YYYY-MM-DD") as info:
        trading_date(REGIONS["americas"], context({"trading_date": bad}))
    assert repr(bad) in str(info.value)


def test_context_conf_trading_date_on_a_holiday_is_refused_with_the_reason():
    with pytest.raises(NotATradingDay) as info:
        trading_date(REGIONS["americas"], context({"trading_date": "2026-11-26"}))
    message = str(info.value)
    assert "2026-11-26 is not a trading day of XNYS (region americas)" in message
    assert "Thanksgiving" in message and "2026-11-25" in message


def test_ignore_window_must_be_a_boolean():
    assert ignore_window(context({"ignore_window": True})) is True
    assert ignore_window(context({})) is False
    with pytest.raises(ValueError, match=r"conf.ignore_window must be true or false, got 'yes'"):
        ignore_window(context({"ignore_window": "yes"}))


# ---------------------------------------------------------------- calendars


def test_unknown_exchange_is_named():
    with pytest.raises(UnknownExchange, match="no trading calendar for exchange 'XXXX'"):
        get_calendar("XXXX")


def test_config_rejects_an_exchange_without_calendar():
    with pytest.raises(ValueError, match="no trading calendar for exchange 'XABC'"):
        Region(timezone="UTC", exchange="XABC", off_peak={"start": "18:00", "end": "06:00"})
