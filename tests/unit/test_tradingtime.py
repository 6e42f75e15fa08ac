"""Unit tests for plugins/offpeak/tradingtime.py: window crons and trading dates per region."""

from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from offpeak import tradingtime
from offpeak.config import Region, load_project
from offpeak.tradingtime import (
    latest_completed_trading_date,
    trading_date_from_context,
    trading_date_of_window_open,
    window_cron,
)

UTC = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
KOLKATA = ZoneInfo("Asia/Kolkata")

# 2026-11-20 is a Friday, 2026-11-23 the Monday after it.
FRIDAY = date(2026, 11, 20)
MONDAY = date(2026, 11, 23)


def region(timezone: str = "America/New_York", start: str = "18:30", end: str = "07:30"):
    return Region(timezone=timezone, exchange="XNYS", off_peak={"start": start, "end": end})


AMERICAS = region()
INDIA = region("Asia/Kolkata", "16:30", "08:30")
EARLY = region("Asia/Tokyo", "02:00", "06:00")  # opens after midnight: previous day's session


@pytest.mark.parametrize(
    ("name", "cron"),
    [
        ("americas", "30 18 * * 1-5"),
        ("europe", "0 18 * * 1-5"),
        ("asia_pacific", "0 16 * * 1-5"),
        ("oceania", "30 17 * * 1-5"),
        ("india", "30 16 * * 1-5"),
    ],
)
def test_window_cron_for_shipped_regions(name, cron):
    regions = load_project().regions
    assert window_cron(regions[name]) == cron


def test_window_opening_after_midnight_runs_tuesday_to_saturday():
    assert window_cron(EARLY) == "0 2 * * 2-6"


def test_early_window_belongs_to_previous_local_date():
    # Saturday 02:00 in Tokyo is the after-hours of Friday's session.
    saturday_open = datetime(2026, 11, 21, 2, 0, tzinfo=TOKYO)
    assert trading_date_of_window_open(EARLY, saturday_open) == FRIDAY
    # The same instant given in UTC (Friday 17:00 UTC) gives the same answer.
    assert trading_date_of_window_open(EARLY, saturday_open.astimezone(UTC)) == FRIDAY


def test_evening_window_belongs_to_same_local_date():
    assert trading_date_of_window_open(AMERICAS, datetime(2026, 11, 20, 18, 30, tzinfo=NY)) == (
        FRIDAY
    )
    # 18:30 New York is 23:30 UTC the same day in November (EST, UTC-5).
    assert trading_date_of_window_open(AMERICAS, datetime(2026, 11, 20, 23, 30, tzinfo=UTC)) == (
        FRIDAY
    )


def test_window_open_given_in_utc_uses_local_date_with_half_hour_offset():
    # IST is UTC+05:30: 11:00 UTC is the 16:30 window open on the same date.
    assert trading_date_of_window_open(INDIA, datetime(2026, 11, 20, 11, 0, tzinfo=UTC)) == FRIDAY
    # 18:29 UTC is 23:59 IST on the 19th; 18:30 UTC is already 00:00 IST on the 20th.
    assert trading_date_of_window_open(INDIA, datetime(2026, 11, 19, 18, 29, tzinfo=UTC)) == date(
        2026, 11, 19
    )
    assert trading_date_of_window_open(INDIA, datetime(2026, 11, 19, 18, 30, tzinfo=UTC)) == FRIDAY


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 20, 18, 29, tzinfo=NY), date(2026, 11, 19)),  # Fri before window
        (datetime(2026, 11, 20, 18, 30, tzinfo=NY), FRIDAY),  # Fri at window open
        (datetime(2026, 11, 21, 12, 0, tzinfo=NY), FRIDAY),  # Saturday
        (datetime(2026, 11, 22, 23, 0, tzinfo=NY), FRIDAY),  # Sunday night
        (datetime(2026, 11, 23, 9, 0, tzinfo=NY), FRIDAY),  # Monday morning
        (datetime(2026, 11, 23, 14, 0, tzinfo=UTC), FRIDAY),  # Monday 09:00 NY, given in UTC
        (datetime(2026, 11, 23, 19, 0, tzinfo=NY), MONDAY),  # Monday after window open
    ],
)
def test_latest_completed_trading_date_skips_weekends(now, expected):
    assert latest_completed_trading_date(AMERICAS, now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 21, 1, 59, tzinfo=TOKYO), date(2026, 11, 19)),  # before Sat window
        (datetime(2026, 11, 21, 2, 0, tzinfo=TOKYO), FRIDAY),  # Saturday's window is Friday's
        (datetime(2026, 11, 23, 3, 0, tzinfo=TOKYO), FRIDAY),  # Monday: no window, still Fri
        (datetime(2026, 11, 24, 1, 0, tzinfo=TOKYO), FRIDAY),  # Tue before its window
        (datetime(2026, 11, 24, 2, 0, tzinfo=TOKYO), MONDAY),  # Tue window is Monday's
    ],
)
def test_latest_completed_trading_date_for_early_window(now, expected):
    assert latest_completed_trading_date(EARLY, now) == expected


def test_context_conf_trading_date_wins():
    context = {
        "dag_run": SimpleNamespace(conf={"trading_date": "2026-11-18"}),
        "data_interval_start": datetime(2026, 11, 20, 23, 30, tzinfo=UTC),
    }
    assert trading_date_from_context(AMERICAS, context) == date(2026, 11, 18)


def test_context_uses_data_interval_start_without_conf():
    context = {
        "dag_run": SimpleNamespace(conf={}),
        "data_interval_start": datetime(2026, 11, 20, 23, 30, tzinfo=UTC),
    }
    assert trading_date_from_context(AMERICAS, context) == FRIDAY


def test_context_uses_logical_date_without_data_interval():
    context = {
        "dag_run": SimpleNamespace(conf=None),
        "data_interval_start": None,
        "logical_date": datetime(2026, 11, 21, 2, 0, tzinfo=TOKYO),
    }
    assert trading_date_from_context(EARLY, context) == FRIDAY


def test_context_without_dates_falls_back_to_latest_completed(monkeypatch):
    # A REST-triggered run with logical_date null has neither a conf date nor an interval.
    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 11, 23, 9, 0, tzinfo=NY).astimezone(tz)

    monkeypatch.setattr(tradingtime, "datetime", FrozenDatetime)
    context = {
        "dag_run": SimpleNamespace(conf={}),
        "data_interval_start": None,
        "logical_date": None,
    }
    assert trading_date_from_context(AMERICAS, context) == FRIDAY
    assert trading_date_from_context(AMERICAS, {}) == FRIDAY


@pytest.mark.parametrize("bad", ["20/11/2026", "yesterday", "2026-02-30"])
def test_context_bad_conf_trading_date_is_named(bad):
    context = {"dag_run": SimpleNamespace(conf={"trading_date": bad})}
    with pytest.raises(ValueError, match="trading_date must be YYYY-MM-DD") as info:
        trading_date_from_context(AMERICAS, context)
    assert repr(bad) in str(info.value)
