"""Calendar overrides in regions.yaml (closures, extra_sessions): the timetables, trading-date
checks, rollups and DAG docs follow them; broken entries are config errors naming the field."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow.timetables.base import DataInterval, TimeRestriction

from offpeak import factory
from offpeak.config import load_project
from offpeak.naming import GLOBAL
from offpeak.params import trading_date
from offpeak.rollups.sensor import TradingDateSensor, rollup_clock
from offpeak.schedule import timetable as timetable_module
from offpeak.schedule import tradingtime
from offpeak.schedule.timetable import GlobalTradingDayTimetable, OffPeakTimetable
from offpeak.schedule.tradingtime import NotATradingDay, RegionClock
from support.timetables import planned_runs as walk

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "config"
CLOSED = date(2026, 1, 15)  # BSE closed (Maharashtra elections); `holidays` has it trading
REASON = "Maharashtra municipal corporation elections"
SATURDAY = date(2026, 1, 17)  # a special session in the tests' edited config
SHIPPED_LINE = f'"2026-01-15": {REASON}'  # the closure's line in the shipped regions.yaml


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(SHIPPED, target)
    return target


def set_india(config_dir: Path, **fields: object) -> Path:
    """regions.yaml with india's ``fields`` replaced (comments are not kept)."""
    path = config_dir / "regions.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["regions"]["india"].update(fields)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def with_saturday_session(config_dir: Path):
    set_india(
        config_dir,
        closures={"2026-01-15": REASON},
        extra_sessions={"2026-01-17": "Special live trading session"},
    )
    project = load_project(config_dir)
    assert project.errors == {}
    return project


def local_dates(infos, zone: str) -> list[str]:
    return [i.logical_date.in_timezone(zone).date().isoformat() for i in infos]


def context(conf: dict | None = None, start: datetime | None = None) -> dict:
    return {"dag_run": SimpleNamespace(conf=conf or {}), "data_interval_start": start}


# --------------------------------------------------------------------------- the shipped closure


def test_the_shipped_india_closure_is_one_the_exchange_calendar_does_not_know():
    india = load_project(SHIPPED).regions["india"]
    assert india.exchange == "XBOM"
    assert india.closures == {CLOSED: REASON}
    plain = RegionClock.of(india.model_copy(update={"closures": {}}))
    assert CLOSED.weekday() == 3 and plain.is_day(CLOSED)  # a Thursday the calendar trades
    assert not RegionClock.of(india).is_day(CLOSED)


def test_no_shipped_override_is_one_the_calendar_already_has():
    """Fails once a `holidays` upgrade learns a listed day: then the entry can go."""
    for region in load_project(SHIPPED).regions.values():
        assert RegionClock.of(region).redundant_overrides() == [], region.name


# --------------------------------------------------------------------------- timetable


def test_the_timetable_skips_a_listed_closure():
    india = load_project(SHIPPED).regions["india"]
    tt = OffPeakTimetable.for_region(india)
    runs = walk(tt, date(2026, 1, 12), date(2026, 1, 19))
    assert local_dates(runs, "Asia/Kolkata") == [
        "2026-01-12", "2026-01-13", "2026-01-14", "2026-01-16", "2026-01-19",
    ]  # fmt: skip
    # The same region without the entry would have run it.
    plain = OffPeakTimetable.for_region(india.model_copy(update={"closures": {}}))
    assert "2026-01-15" in local_dates(walk(plain, CLOSED, CLOSED), "Asia/Kolkata")


def test_the_timetable_schedules_an_extra_session(config_dir, monkeypatch):
    india = with_saturday_session(config_dir).regions["india"]
    tt = OffPeakTimetable.for_region(india)
    runs = walk(tt, date(2026, 1, 14), date(2026, 1, 19))
    assert local_dates(runs, "Asia/Kolkata") == [
        "2026-01-14", "2026-01-16", "2026-01-17", "2026-01-19",
    ]  # fmt: skip
    saturday = runs[2]
    # Due when Saturday's window opens, 16:30 in Kolkata; the interval is that local day.
    assert saturday.run_after == datetime(2026, 1, 17, 11, 0, tzinfo=UTC)
    assert saturday.data_interval.start == datetime(2026, 1, 16, 18, 30, tzinfo=UTC)

    # The scheduler's own planning: after Friday's run comes Saturday's, then Monday's.
    monkeypatch.setattr(timetable_module, "_utcnow", lambda: datetime(2026, 1, 17, tzinfo=UTC))
    restriction = TimeRestriction(datetime(2026, 1, 1, tzinfo=UTC), None, catchup=True)
    friday = runs[1].data_interval
    following = tt.next_dagrun_info(last_automated_data_interval=friday, restriction=restriction)
    assert following.data_interval == saturday.data_interval
    after = tt.next_dagrun_info(
        last_automated_data_interval=following.data_interval, restriction=restriction
    )
    assert after.logical_date.in_timezone("Asia/Kolkata").date() == date(2026, 1, 19)


def test_a_manual_run_given_the_closed_date_as_logical_date_is_the_session_before():
    """Like a holiday: the UI's plain date on a closure stands for the last session before."""
    tt = OffPeakTimetable.for_region(load_project(SHIPPED).regions["india"])
    interval = tt.infer_manual_data_interval(run_after=_p(2026, 1, 15))
    assert interval.start.in_timezone("Asia/Kolkata").date() == date(2026, 1, 14)


def _p(*args: int):
    import pendulum

    return pendulum.datetime(*args, tz="UTC")


def test_serialization_round_trip_keeps_the_overrides(config_dir):
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    tt = OffPeakTimetable.for_region(with_saturday_session(config_dir).regions["india"])
    back = decode_timetable(encode_timetable(tt))
    assert back == tt
    assert back.serialize()["closures"] == {"2026-01-15": REASON}
    assert back.serialize()["extra_sessions"] == {"2026-01-17": "Special live trading session"}
    assert not back.clock.is_day(CLOSED) and back.clock.is_day(SATURDAY)
    assert local_dates(walk(back, CLOSED, SATURDAY), "Asia/Kolkata") == [
        "2026-01-16", "2026-01-17",
    ]  # fmt: skip
    assert "regions.yaml adds 1 closure and 1 session" in back.description
    assert back != OffPeakTimetable.for_region(load_project(SHIPPED).regions["india"])


def test_a_region_without_overrides_serializes_as_before():
    """No new keys, so its DAGs get no new version; and a timetable serialized before the
    overrides existed still deserializes."""
    europe = OffPeakTimetable.for_region(load_project(SHIPPED).regions["europe"])
    assert set(europe.serialize()) == {
        "region", "timezone", "exchange", "window_start", "window_end", "catchup_days",
    }  # fmt: skip
    assert "regions.yaml" not in europe.description
    old = OffPeakTimetable.deserialize(europe.serialize())
    assert old == europe and old.closures == {} and old.extra_sessions == {}


def test_the_global_timetable_round_trip_keeps_each_regions_overrides(config_dir):
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    project = with_saturday_session(config_dir)
    tt = GlobalTradingDayTimetable.for_regions(project.rolled_up_regions())
    back = decode_timetable(encode_timetable(tt))
    assert back == tt
    india = next(c for c in back.clock.regions if c.name == "india")
    assert not india.is_day(CLOSED) and india.is_day(SATURDAY)


# --------------------------------------------------------------------------- trading-date checks


def test_a_manual_trading_date_on_a_listed_closure_is_refused_naming_it():
    india = load_project(SHIPPED).regions["india"]
    with pytest.raises(NotATradingDay) as info:
        trading_date(india, context({"trading_date": "2026-01-15"}))
    assert str(info.value) == (
        "2026-01-15 is not a trading day of XBOM (region india): closure listed in "
        f"regions.yaml: {REASON}; the session before it is 2026-01-14"
    )


def test_a_manual_trading_date_on_an_extra_session_is_accepted(config_dir):
    project = with_saturday_session(config_dir)
    assert trading_date(project.regions["india"], context({"trading_date": "2026-01-17"})) == (
        SATURDAY
    )
    # Without the entry, the calendar refuses that Saturday.
    with pytest.raises(NotATradingDay, match=r"2026-01-17 is not a trading day .*: weekend"):
        trading_date(
            load_project(SHIPPED).regions["india"], context({"trading_date": "2026-01-17"})
        )


# --------------------------------------------------------------------------- rollups


def global_sensor(region: str) -> TradingDateSensor:
    return TradingDateSensor(
        task_id=region, scope=GLOBAL, upstream_region=region,
        external_dag_id=f"rollup__{region}", external_task_id="summarize",
    )  # fmt: skip


def test_the_region_rollup_refuses_a_closure_and_the_global_one_does_not_wait_for_it(capsys):
    project = load_project(SHIPPED)
    with pytest.raises(NotATradingDay, match=r"closure listed in regions\.yaml"):
        trading_date(rollup_clock(project, "india"), context({"trading_date": "2026-01-15"}))
    india_rollup = OffPeakTimetable.for_region(project.regions["india"])
    assert walk(india_rollup, CLOSED, CLOSED) == []

    # rollup__global still runs that Thursday (the other regions trade), without India.
    global_tt = GlobalTradingDayTimetable.for_regions(project.rolled_up_regions())
    (run,) = walk(global_tt, CLOSED, CLOSED)
    clock = rollup_clock(project, GLOBAL)
    assert [r.name for r in clock.trading_regions(CLOSED)] == [
        "americas", "asia_pacific", "europe", "oceania",
    ]  # fmt: skip
    sensor, ctx = global_sensor("india"), context(start=run.data_interval.start)
    assert sensor.upstream_closed(ctx)
    # The task log (Airflow's structlog writes it to stdout here).
    assert f"india does not trade on 2026-01-15 (closure listed in regions.yaml: {REASON})" in (
        capsys.readouterr().out
    )
    assert not global_sensor("europe").upstream_closed(ctx)


def test_an_extra_session_gets_a_global_rollup_that_waits_for_that_region_alone(
    config_dir, monkeypatch
):
    project = with_saturday_session(config_dir)
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config_dir))  # what the sensors read at run time
    global_tt = GlobalTradingDayTimetable.for_regions(project.rolled_up_regions())
    (run,) = walk(global_tt, SATURDAY, SATURDAY)
    assert run.logical_date == datetime(2026, 1, 17, tzinfo=UTC)
    # Due 30 min after India's Saturday window closes (08:30 Sunday in Kolkata).
    assert run.run_after == datetime(2026, 1, 18, 3, 30, tzinfo=UTC)
    clock = rollup_clock(project, GLOBAL)
    assert [r.name for r in clock.trading_regions(SATURDAY)] == ["india"]
    ctx = context(start=run.data_interval.start)
    closed = [
        r.name for r in project.rolled_up_regions() if global_sensor(r.name).upstream_closed(ctx)
    ]
    assert closed == ["americas", "asia_pacific", "europe", "oceania"]
    # India's rollup waits for the site runs of that Saturday's logical date.
    india = global_sensor("india")
    waited = india.upstream_logical_date(run.logical_date, **ctx)
    india_run = walk(OffPeakTimetable.for_region(project.regions["india"]), SATURDAY, SATURDAY)
    assert [waited] == [r.logical_date for r in india_run]


# --------------------------------------------------------------------------- DAG docs


def test_the_dag_docs_name_the_overrides(config_dir):
    project = with_saturday_session(config_dir)
    doc = factory._doc_md(project.sites["funds"], project.regions["india"], project.alerts)
    assert (
        "* `XBOM` calendar overrides of region `india` (regions.yaml): closed 2026-01-15 "
        f"({REASON}); extra session 2026-01-17 (Special live trading session)\n"
    ) in doc
    assert f"  closures:\n    '2026-01-15': {REASON}\n" in doc  # the resolved config
    europe = factory._doc_md(project.sites["equities"], project.regions["europe"], project.alerts)
    assert "calendar overrides" not in europe and "  closures: {}\n" in europe

    rollups = factory.build_rollup_dags(project)
    assert "closed 2026-01-15" in rollups["rollup__india"].doc_md
    assert "closed 2026-01-15" in rollups["rollup__global"].doc_md
    assert "calendar overrides" not in rollups["rollup__europe"].doc_md


# --------------------------------------------------------------------------- config errors


def edit_shipped_line(config_dir: Path, new: str) -> Path:
    path = config_dir / "regions.yaml"
    text = path.read_text(encoding="utf-8")
    assert SHIPPED_LINE in text
    path.write_text(text.replace(SHIPPED_LINE, new), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('"2026-02-30": moved', ["'2026-02-30' is not a date", "day is out of range"]),
        ('"15/01/2026": elections', ["'15/01/2026' is not a date in the form YYYY-MM-DD"]),
        ("2026-1-15: elections", ["'2026-1-15' is not a date in the form YYYY-MM-DD"]),
        ('"2026-01-15":', ["2026-01-15: give the reason as text after the date"]),
        ('"2026-01-15": x\n      2026-01-15: y', ["2026-01-15 is listed twice"]),
    ],
)
def test_a_bad_closure_is_a_config_error_naming_file_region_and_field(config_dir, line, words):
    path = edit_shipped_line(config_dir, line)
    project = load_project(config_dir)
    assert project.sites == {} and set(project.errors) == {"regions.yaml"}
    message = project.errors["regions.yaml"]
    assert str(path) in message and "field `regions.india.closures`" in message, message
    for word in words:
        assert word in message, message


def test_an_unquoted_date_is_read_as_well(config_dir):
    edit_shipped_line(config_dir, f"2026-01-15: {REASON}")
    assert load_project(config_dir).regions["india"].closures == {CLOSED: REASON}


def test_a_list_of_dates_is_refused_with_the_form_to_use(config_dir):
    path = set_india(config_dir, closures=["2026-01-15"])
    message = load_project(config_dir).errors["regions.yaml"]
    assert str(path) in message and "field `regions.india.closures`" in message
    assert 'expected a mapping of quoted dates to the reason, e.g. closures: {"2026-01-15"' in (
        message
    )


def test_a_date_both_closed_and_an_extra_session_is_refused(config_dir):
    path = set_india(config_dir, closures={"2026-01-15": "a"}, extra_sessions={"2026-01-15": "b"})
    message = load_project(config_dir).errors["regions.yaml"]
    assert str(path) in message and "field `regions.india.extra_sessions`" in message
    assert "2026-01-15 also listed in closures: a day is either closed or trades" in message


def test_a_closure_the_calendar_already_has_is_a_warning_not_an_error(
    config_dir, caplog, monkeypatch
):
    """A `holidays` upgrade that learns a closure must not take every DAG down."""
    monkeypatch.setattr(tradingtime, "_warned", set())
    set_india(
        config_dir,
        closures={"2026-01-15": REASON, "2026-01-26": "Republic Day"},
        extra_sessions={"2026-01-14": "already a session"},
    )
    project = load_project(config_dir)
    assert project.errors == {} and project.sites
    clock = RegionClock.of(project.regions["india"])
    with caplog.at_level(logging.WARNING, logger=tradingtime.__name__):
        assert not clock.is_day(date(2026, 1, 26)) and clock.is_day(date(2026, 1, 14))
        RegionClock.of(project.regions["india"]).is_day(CLOSED)  # a new clock: no repeat
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "regions.yaml: region india lists 2026-01-26 in closures, but the XBOM calendar "
        "already closes it (Republic Day); the entry can go",
        "regions.yaml: region india lists 2026-01-14 in extra_sessions, but the XBOM calendar "
        "already has a session that day; the entry can go",
    ]


def test_the_interval_of_the_day_after_a_closure_is_unchanged():
    """A closure removes a run; it does not stretch its neighbours' data intervals."""
    tt = OffPeakTimetable.for_region(load_project(SHIPPED).regions["india"])
    (friday,) = walk(tt, date(2026, 1, 16), date(2026, 1, 16))
    assert friday.data_interval == DataInterval(
        _p(2026, 1, 15, 18, 30), _p(2026, 1, 15, 18, 30) + timedelta(days=1)
    )
