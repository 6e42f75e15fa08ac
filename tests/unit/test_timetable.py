"""OffPeakTimetable over whole years, across DST and holidays, for every shipped region."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from airflow.timetables.base import DataInterval, TimeRestriction

from offpeak.config import load_project
from offpeak.schedule import timetable as timetable_module
from offpeak.schedule.timetable import OffPeakTimetable
from offpeak.schedule.tradingtime import RegionClock
from support.timetables import planned_runs as walk

REGIONS = load_project().regions
YEAR = 2027
# Sessions in 2027: weekdays (261) minus the exchange's weekday holidays.
RUNS_IN_2027 = {"americas": 251, "europe": 253, "asia_pacific": 244, "oceania": 254, "india": 252}
# Holidays checked against the exchanges' published calendars, not against the library.
NO_RUN = {
    "americas": ["2027-01-01", "2027-01-18", "2027-03-26",
                 "2027-06-18", "2027-07-05", "2027-11-25", "2027-12-24"],
    "europe": ["2027-03-26", "2027-03-29", "2027-05-03", "2027-08-30", "2027-12-27",
               "2027-12-28"],
    "asia_pacific": ["2027-01-01", "2027-01-11", "2027-05-03", "2027-05-04", "2027-05-05",
                     "2027-12-31"],
    "oceania": ["2027-01-01", "2027-01-26", "2027-03-26", "2027-03-29", "2027-06-14",
                "2027-12-27", "2027-12-28"],
    "india": ["2027-01-26", "2027-03-26", "2027-10-29"],
}  # fmt: skip
# Days that do trade although a neighbouring market or a naive rule might say otherwise.
RUN = {
    "americas": ["2027-03-29", "2027-12-31"],  # Easter Monday; New Year's Eve
    "europe": ["2027-01-04", "2027-07-05"],
    "asia_pacific": ["2027-01-04"],
    "oceania": ["2027-04-26"],  # Anzac Day fell on a Sunday; ASX trades on the Monday
    "india": ["2027-01-01"],
}


@pytest.mark.parametrize("name", sorted(REGIONS))
def test_a_whole_year_has_exactly_one_run_per_session(name):
    region = REGIONS[name]
    tt = OffPeakTimetable.for_region(region)
    clock = RegionClock.of(region)
    infos = walk(tt, datetime(YEAR, 1, 1, tzinfo=UTC), datetime(YEAR, 12, 31, tzinfo=UTC))

    trading_dates = [clock.local_date(i.data_interval.start) for i in infos]
    assert len(trading_dates) == len(set(trading_dates)) == RUNS_IN_2027[name]
    all_days = [date(YEAR, 1, 1) + timedelta(n) for n in range(365)]
    assert trading_dates == [d for d in all_days if clock.calendar.is_session(d)]
    assert all(d.weekday() < 5 for d in trading_dates)
    for day in NO_RUN[name]:
        assert date.fromisoformat(day) not in trading_dates, f"{name}: run on holiday {day}"
    for day in RUN[name]:
        assert date.fromisoformat(day) in trading_dates, f"{name}: no run on {day}"

    for info, day in zip(infos, trading_dates, strict=True):
        start, end = info.data_interval
        local_start, local_end = start.astimezone(clock.tz), end.astimezone(clock.tz)
        # Interval = the trading day, local midnight to the next local midnight (DST too).
        assert (local_start.date(), local_start.time().isoformat()) == (day, "00:00:00")
        assert (local_end.date(), local_end.time().isoformat()) == (
            day + timedelta(days=1),
            "00:00:00",
        )
        assert info.logical_date == start
        # Due when the window opens: the configured local time, inside the window.
        run_after = info.run_after.astimezone(clock.tz)
        assert run_after.time() == region.off_peak.start
        opens, closes = clock.current_window(info.run_after)
        assert opens == info.run_after < closes
        assert run_after.date() == (day + timedelta(days=1) if clock.opens_next_day else day)


def test_every_region_of_one_trading_date_shares_its_local_midnight():
    """Logical dates line up per region: every DAG of a region uses the same timetable."""
    for name, region in REGIONS.items():
        tt = OffPeakTimetable.for_region(region)
        (info,) = walk(tt, datetime(2027, 3, 15, tzinfo=UTC), datetime(2027, 3, 15, tzinfo=UTC))
        assert info.logical_date.in_timezone(region.timezone).date() == date(2027, 3, 15), name


def test_summary_and_description_read_well_in_the_ui():
    tt = OffPeakTimetable.for_region(REGIONS["americas"])
    assert tt.summary == "XNYS trading days, off-peak 18:30–07:30 America/New_York"
    assert tt.description.startswith("One run per XNYS trading day (no run on weekends or")
    assert "18:30 America/New_York" in tt.description


def test_serialize_round_trips_through_airflow():
    """Scheduler, dag-processor and api-server rebuild it from the serialized DAG."""
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    tt = OffPeakTimetable.for_region(REGIONS["oceania"], catchup_days=3)
    encoded = encode_timetable(tt)
    assert encoded["__type"] == "offpeak.schedule.timetable.OffPeakTimetable"
    back = decode_timetable(encoded)
    assert back == tt and back.serialize() == tt.serialize()
    assert back.summary == "XASX trading days, off-peak 17:30–09:00 Australia/Sydney"


# ---------------------------------------------------------------- manual runs


def test_manual_run_maps_its_logical_date_to_the_trading_day():
    tt = OffPeakTimetable.for_region(REGIONS["americas"])
    # "Trigger" in the UI at Tue 2026-11-24 07:34 New York: Monday's data (window opened).
    interval = tt.infer_manual_data_interval(run_after=_p(2026, 11, 24, 12, 34))
    assert interval.start.in_timezone("America/New_York").date() == date(2026, 11, 23)
    assert (interval.end - interval.start) == timedelta(days=1)
    # A plain date (midnight UTC) is that trading date; a Sunday is the Friday before it.
    sunday = tt.infer_manual_data_interval(run_after=_p(2026, 11, 22))
    assert sunday.start.in_timezone("America/New_York").date() == date(2026, 11, 20)


@pytest.mark.parametrize(
    ("run_type", "day", "expected"),
    [
        # India's run for Monday 9 November: its logical date is local midnight (18:30 UTC on
        # the 8th, which reads as "the 8th"); its window opens at 16:30 IST (11:00 UTC).
        ("scheduled", date(2026, 11, 9), "scheduled__2026-11-09__2026-11-09T11:00:00+00:00"),
        # The 10th is a holiday (Diwali Balipratipada): the next run is the 11th's.
        ("scheduled", date(2026, 11, 10), "scheduled__2026-11-11__2026-11-11T11:00:00+00:00"),
    ],
)
def test_a_run_id_names_its_trading_date(run_type, day, expected):
    """The UI's run list and the REST API show the trading date, not only UTC instants (the
    logical date of India's 9 November is 2026-11-08T18:30 UTC)."""
    from airflow.utils.types import DagRunType

    tt = OffPeakTimetable.for_region(REGIONS["india"])
    info = tt.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=_p(day.year, day.month, day.day), latest=None,
                                    catchup=True),
    )  # fmt: skip
    run_id = tt.generate_run_id(
        run_type=DagRunType(run_type), run_after=info.run_after, data_interval=info.data_interval
    )
    assert run_id == expected
    # A manual trigger's id names the trading day its logical date maps to; none: Airflow's.
    manual = tt.infer_manual_data_interval(run_after=_p(2026, 11, 10, 12))  # the holiday
    assert tt.generate_run_id(
        run_type=DagRunType.MANUAL, run_after=_p(2026, 11, 10, 12), data_interval=manual
    ).startswith("manual__2026-11-09__")
    assert (
        tt.generate_run_id(
            run_type=DagRunType.MANUAL, run_after=_p(2026, 11, 10, 12), data_interval=None
        )
        == "manual__2026-11-10T12:00:00+00:00"
    )


def _p(*args: int):
    import pendulum

    return pendulum.datetime(*args, tz="UTC")


# ---------------------------------------------------------------- catchup and backfill


@pytest.fixture
def frozen_now(monkeypatch):
    def freeze(moment: datetime) -> None:
        monkeypatch.setattr(timetable_module, "_utcnow", lambda: moment)

    return freeze


START = datetime(2026, 1, 1, 5, tzinfo=UTC)  # the DAGs' start_date: 2026-01-01 in New York


def test_without_catchup_the_first_run_is_the_latest_due_day(frozen_now):
    tt = OffPeakTimetable.for_region(REGIONS["americas"])
    frozen_now(datetime(2026, 11, 27, 15, 0, tzinfo=UTC))  # Fri after Thanksgiving, 10:00 NY
    info = tt.next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(START, None, False)
    )
    assert info.logical_date.in_timezone("America/New_York").date() == date(2026, 11, 25)
    # After it, the next run is Friday's, due at Friday's window.
    following = tt.next_dagrun_info(
        last_automated_data_interval=info.data_interval,
        restriction=TimeRestriction(START, None, False),
    )
    assert following.logical_date.in_timezone("America/New_York").date() == date(2026, 11, 27)
    assert following.run_after == _p(2026, 11, 27, 23, 30)


def test_catchup_is_bounded_by_catchup_days(frozen_now):
    tt = OffPeakTimetable.for_region(REGIONS["americas"], catchup_days=3)
    frozen_now(datetime(2026, 11, 27, 15, 0, tzinfo=UTC))
    restriction = TimeRestriction(START, None, True)
    info = tt.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    # Latest opened session 11-25, three sessions: 11-23, 11-24, 11-25.
    assert info.logical_date.in_timezone("America/New_York").date() == date(2026, 11, 23)
    # A DAG paused for weeks resumes within the bound too.
    old = DataInterval(_p(2026, 10, 1, 4), _p(2026, 10, 2, 4))
    info = tt.next_dagrun_info(last_automated_data_interval=old, restriction=restriction)
    assert info.logical_date.in_timezone("America/New_York").date() == date(2026, 11, 23)


def test_catchup_without_bound_starts_at_start_date(frozen_now):
    tt = OffPeakTimetable.for_region(REGIONS["americas"])
    frozen_now(datetime(2026, 11, 27, 15, 0, tzinfo=UTC))
    info = tt.next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(START, None, True)
    )
    assert info.logical_date.in_timezone("America/New_York").date() == date(2026, 1, 2)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("americas", ["2026-11-25", "2026-11-27", "2026-11-30"]),  # Thanksgiving + weekend
        ("asia_pacific", ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-30"]),
        ("india", ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-30"]),
    ],
)
def test_backfill_with_plain_dates_selects_trading_dates_in_every_zone(name, expected, frozen_now):
    """`airflow backfill create --from-date 2026-11-25 --to-date 2026-11-30` (read as UTC
    midnights) gives the sessions of those dates, east or west of UTC; catchup_days and
    "now" do not limit it."""
    frozen_now(datetime(2026, 12, 1, tzinfo=UTC))
    tt = OffPeakTimetable.for_region(REGIONS[name], catchup_days=1)
    infos = walk(tt, datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    zone = REGIONS[name].timezone
    assert [i.logical_date.in_timezone(zone).date().isoformat() for i in infos] == expected


def test_backfill_bounds_with_a_time_or_offset_are_exact_instants():
    tt = OffPeakTimetable.for_region(REGIONS["asia_pacific"])
    tokyo_midnight_25 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    after_it = tokyo_midnight_25 + timedelta(seconds=1)
    infos = walk(tt, after_it, datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    # The 25th starts before the lower bound; the 27th (starts 26th 15:00Z) is inside.
    dates = [i.logical_date.in_timezone("Asia/Tokyo").date().isoformat() for i in infos]
    assert dates == ["2026-11-26", "2026-11-27"]


def test_the_dag_docs_tell_how_to_read_a_run_id_and_a_logical_date():
    from offpeak import factory

    project = load_project()
    doc = factory._doc_md(project.sites["funds"], project.regions["india"], project.alerts)
    assert "`scheduled__<trading date>__<window opening, UTC>`" in doc
    assert "east of UTC falls on the day before (in `Asia/Kolkata`" in doc
