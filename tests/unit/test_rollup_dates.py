"""The dates rollups wait for: global ↔ regional logical dates across DST and holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from offpeak.config import load_project
from offpeak.naming import GLOBAL
from offpeak.rollups.sensor import TradingDateSensor, rollup_clock, rollup_logical_date
from offpeak.schedule.timetable import GlobalTradingDayTimetable, OffPeakTimetable
from support.timetables import planned_runs as runs

PROJECT = load_project()
REGIONS = [r.name for r in PROJECT.rolled_up_regions()]
GLOBAL_CLOCK = rollup_clock(PROJECT, GLOBAL)
GLOBAL_TT = GlobalTradingDayTimetable.for_regions(
    [PROJECT.regions[r] for r in REGIONS], PROJECT.rollups.global_delay_minutes
)
# Every DST change of 2027 in a shipped zone (Tokyo and Kolkata have none).
DST_CHANGES = {
    "America/New_York": [date(2027, 3, 14), date(2027, 11, 7)],
    "Europe/London": [date(2027, 3, 28), date(2027, 10, 31)],
    "Australia/Sydney": [date(2027, 4, 4), date(2027, 10, 3)],
}
AROUND = [
    change + timedelta(days=offset)
    for changes in DST_CHANGES.values()
    for change in changes
    for offset in (-2, -1, 0, 1)  # Friday, Saturday, the Sunday of the change, Monday
]


def sensor_for(region: str) -> TradingDateSensor:
    return TradingDateSensor(
        task_id=region, scope=GLOBAL, upstream_region=region,
        external_dag_id=f"rollup__{region}", external_task_id="summarize",
    )  # fmt: skip


def global_context(day: date) -> dict:
    start = datetime.combine(day, datetime.min.time(), UTC)
    return {"dag_run": SimpleNamespace(conf={}), "data_interval_start": start}


@pytest.mark.parametrize("day", sorted(set(AROUND)), ids=str)
def test_global_maps_to_each_region_logical_date_around_every_dst_change(day):
    global_runs = runs(GLOBAL_TT, day, day)
    trading = [r for r in REGIONS if rollup_clock(PROJECT, r).is_day(day)]
    assert len(global_runs) == (1 if trading else 0)  # weekends: no global run
    for region in REGIONS:
        sensor = sensor_for(region)
        context = global_context(day)
        region_runs = runs(OffPeakTimetable.for_region(PROJECT.regions[region]), day, day)
        if region not in trading:
            assert region_runs == [] and sensor.upstream_closed(context)
            continue
        (region_run,) = region_runs
        waited_for = sensor.upstream_logical_date(context["data_interval_start"], **context)
        # Exactly the logical date the region's DAGs have for that trading date.
        assert waited_for == region_run.logical_date
        local = region_run.logical_date.in_timezone(PROJECT.regions[region].timezone)
        assert (local.date(), local.hour, local.minute) == (day, 0, 0)
        assert not sensor.upstream_closed(context)
    if global_runs:
        (run,) = global_runs
        assert run.logical_date == datetime.combine(day, datetime.min.time(), UTC)
        last_close = max(
            rollup_clock(PROJECT, r).session_window(day)[1] for r in trading
        )  # fmt: skip
        assert run.run_after == last_close + timedelta(minutes=30)


def test_a_region_closed_on_a_global_trading_date_is_not_waited_for():
    thanksgiving = date(2026, 11, 26)  # NYSE closed; London, Tokyo, Sydney, Mumbai trade
    (run,) = runs(GLOBAL_TT, thanksgiving, thanksgiving)
    context = global_context(thanksgiving)
    closed = [r for r in REGIONS if sensor_for(r).upstream_closed(context)]
    assert closed == ["americas"]
    # It is due after the last *trading* region's window: Europe's, 07:00 London next day.
    assert run.run_after == datetime(2026, 11, 27, 7, 30, tzinfo=UTC)


def test_global_trading_days_of_2027():
    infos = runs(GLOBAL_TT, date(2027, 1, 1), date(2027, 12, 31))
    days = [i.logical_date.date() for i in infos]
    assert all(d.weekday() < 5 for d in days)
    assert len(days) == len(set(days)) == 261  # every weekday: some region always trades
    assert date(2027, 12, 24) in days  # NYSE closed, the rest open (ASX half day)


def test_global_timetable_serializes_and_reads_well():
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    back = decode_timetable(encode_timetable(GLOBAL_TT))
    assert back == GLOBAL_TT and back.clock.is_day(date(2027, 1, 1))
    assert GLOBAL_TT.summary == (
        "Trading days of XASX, XBOM, XLON, XNYS, XTKS, after the last window closes (UTC)"
    )


def test_region_rollup_run_without_logical_date_waits_for_the_latest_due_day(monkeypatch):
    """REST "logical_date": null: the date comes from conf, else the latest due day, never
    from run_after (which no upstream has as logical date)."""
    sensor = TradingDateSensor(
        task_id="equities", scope="europe", upstream_region="europe",
        external_dag_id="scrape__equities__europe", external_task_id="load",
    )  # fmt: skip
    run = SimpleNamespace(conf={"trading_date": "2026-11-20"}, run_after=datetime.now(tz=UTC))
    waited = sensor.upstream_logical_date(run.run_after, dag_run=run)
    assert waited == datetime(2026, 11, 20, tzinfo=UTC)  # London midnight in winter
    clock = rollup_clock(PROJECT, "europe")
    run.conf = {}
    waited = sensor.upstream_logical_date(run.run_after, dag_run=run)
    assert waited == clock.midnight(clock.latest_due_day(datetime.now(tz=UTC)))


def test_markers_render_the_downstream_rollups_logical_date():
    # A Tokyo site run for 2026-11-20 (interval starts 2026-11-19T15:00Z) marks
    # rollup__asia_pacific of the same logical date, and that marks rollup__global's
    # 2026-11-20T00:00Z.
    run = SimpleNamespace(conf={}, data_interval_start=datetime(2026, 11, 19, 15, tzinfo=UTC))
    assert rollup_logical_date("asia_pacific", "asia_pacific", run) == "2026-11-19T15:00:00+00:00"
    assert rollup_logical_date("asia_pacific", GLOBAL, run) == "2026-11-20T00:00:00+00:00"


def resumed_context(day: date) -> dict:
    """What a sensor's resumption after its deferral gets: the run's logical date too."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    return {**global_context(day), "logical_date": start}


def test_a_failed_upstream_fails_the_sensor_without_retry():
    """The rollups retry a lost try (a worker killed while a sensor ran), never a failed
    input: the trigger's "failed" event fails the sensor for good."""
    from airflow.providers.standard.exceptions import ExternalDagFailedError
    from airflow.sdk.exceptions import AirflowFailException

    sensor = sensor_for("europe")
    with pytest.raises(AirflowFailException) as failure:
        sensor.execute_complete(resumed_context(date(2026, 11, 20)), {"status": "failed"})
    assert isinstance(failure.value.__cause__, ExternalDagFailedError)


def test_a_lost_answer_from_the_trigger_is_retried():
    """No event (the triggerer lost it) is not a verdict on the upstream: retried."""
    from airflow.providers.standard.exceptions import ExternalTaskNotFoundError

    with pytest.raises(ExternalTaskNotFoundError):
        sensor_for("europe").execute_complete(resumed_context(date(2026, 11, 20)), None)
