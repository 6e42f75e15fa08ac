"""The coverage matrix from the shipped config, given load audit rows and DAG runs as the
sources return them (plain records: no database here; the stack tier reads the real ones).

The clock is fixed at Friday 2026-11-27 12:00 UTC: the day after Thanksgiving (XNYS closed
on the 26th), before the americas and europe windows of the 27th open, after the asian ones.
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from offpeak.config import load_project
from offpeak.coverage import matrix as m
from offpeak.coverage.__main__ import main, render
from offpeak.partition import Partition
from offpeak.schedule.tradingtime import RegionClock
from support import REPO

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def project():
    return load_project()


def load(where: tuple[str, str, date], run_id: str, rows: int, *, complete: bool = True,
         rejected: int = 0) -> m.Load:  # fmt: skip
    """The latest load_audit row of the (site, region, trading date) ``where``."""
    return m.Load(Partition(*where, run_id), complete, rows + rejected, rejected, rows, 0, 0, 0,
                  datetime(2026, 11, 27, 1, 0, tzinfo=UTC))  # fmt: skip


def scheduled_run(dag_id: str, day: date, zone: str, state: str, run_id: str, id: int) -> m.Run:
    midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
    return m.Run(dag_id, run_id, state, "scheduled", midnight, midnight, None, {}, id)


def enabled(project, since: datetime = datetime(2026, 10, 1, tzinfo=UTC)) -> dict:
    """Every scrape DAG's first scheduled run: long before the dates shown."""
    return {f"scrape__{s.name}__{r.name}": since for s, r in project.pairs()}


def cell(result: m.Matrix, dag_id: str, day: str) -> m.Cell:
    row = next(r for r in result.rows if r.dag_id == dag_id)
    return next(c for c in row.cells if c.date == day)


def test_columns_are_the_last_trading_dates_of_any_region(project):
    result = m.build(project, {}, (), now=NOW, days=20)
    assert len(result.dates) == 20
    assert result.dates[-1] == "2026-11-27"  # due in asia_pacific, oceania and india
    assert "2026-11-26" in result.dates  # Thanksgiving: XNYS is closed, the others trade
    assert "2026-11-22" not in result.dates and "2026-11-21" not in result.dates  # a weekend
    assert result.dates[0] == "2026-11-02"


def test_each_cell_has_the_state_an_operator_expects(project):
    loads = [
        load(("equities", "americas", date(2026, 11, 25)), "scheduled__a", 57),
        load(("equities", "europe", date(2026, 11, 26)), "scheduled__e", 40, complete=False),
        load(("equities", "india", date(2026, 11, 27)), "manual__first", 61, rejected=2),
    ]
    runs = [
        scheduled_run("scrape__fx_rates__americas", date(2026, 11, 25), "America/New_York",
                      "failed", "scheduled__fx", 10),
        scheduled_run("scrape__funds__india", date(2026, 11, 27), "Asia/Kolkata",
                      "running", "scheduled__funds", 11),
        # A load of the 27th, then a later run of the same date that failed: failed, rows kept.
        m.Run("scrape__equities__india", "manual__first", "success", "manual",
              None, None, datetime(2026, 11, 27, 11, 5, tzinfo=UTC),
              {"trading_date": "2026-11-27"}, 12),
        m.Run("scrape__equities__india", "manual__again", "failed", "manual",
              None, None, datetime(2026, 11, 27, 11, 30, tzinfo=UTC),
              {"trading_date": "2026-11-27"}, 13),
    ]  # fmt: skip
    result = m.build(project, loads, runs, now=NOW, days=5, first_scheduled=enabled(project))

    done = cell(result, "scrape__equities__americas", "2026-11-25")
    assert (done.state, done.rows, done.load_run_id) == ("complete", 57, "scheduled__a")
    partial = cell(result, "scrape__equities__europe", "2026-11-26")
    assert (partial.state, partial.rows) == ("partial", 40)
    assert "stopped at the end of the off-peak window" in partial.detail
    failed = cell(result, "scrape__fx_rates__americas", "2026-11-25")
    assert (failed.state, failed.run_id, failed.rows) == ("failed", "scheduled__fx", None)
    assert cell(result, "scrape__funds__india", "2026-11-27").state == "running"
    again = cell(result, "scrape__equities__india", "2026-11-27")
    assert (again.state, again.run_id, again.rows, again.rows_rejected) == (
        "failed", "manual__again", 61, 2)  # fmt: skip
    kept = "the rows of the load of 2026-11-27T01:00:00+00:00 are kept"
    assert again.detail == f"run manual__again failed; {kept}"
    closed = cell(result, "scrape__equities__americas", "2026-11-26")
    assert (closed.state, closed.detail) == ("closed", "XNYS does not trade: Thanksgiving Day")
    later = cell(result, "scrape__equities__americas", "2026-11-27")
    assert later.state == "scheduled"  # its window opens at 18:30 New York time
    assert later.detail == "due when the off-peak window opens, 2026-11-27 18:30 America/New_York"
    missing = cell(result, "scrape__fx_rates__oceania", "2026-11-27")
    assert (missing.state, missing.detail) == ("missing", "no run for this trading day")
    assert result.counts()["failed"] == 2
    assert [(r.dag_id, c.date) for r, c in result.gaps()][:2] == [
        ("scrape__equities__americas", "2026-11-23"),
        ("scrape__equities__americas", "2026-11-24"),
    ]


def test_a_later_successful_run_clears_a_failure(project):
    day = date(2026, 11, 25)
    runs = [
        scheduled_run("scrape__fx_rates__americas", day, "America/New_York", "failed", "a", 1),
        m.Run("scrape__fx_rates__americas", "backfill__b", "success", "backfill",
              datetime(2026, 11, 25, 5, tzinfo=UTC), datetime(2026, 11, 25, 5, tzinfo=UTC),
              None, {"ignore_window": True}, 2),
    ]  # fmt: skip
    loads = [load(("fx_rates", "americas", day), "backfill__b", 12)]
    result = m.build(project, loads, runs, now=NOW, days=3)
    assert cell(result, "scrape__fx_rates__americas", "2026-11-25").state == "complete"


def test_a_closure_listed_in_regions_yaml_is_a_closed_day(project):
    # BSE closed for the Maharashtra elections; holidays' own XBOM calendar trades that day.
    since = enabled(project, datetime(2025, 12, 1, tzinfo=UTC))
    result = m.build(project, {}, (), now=datetime(2026, 1, 16, 12, tzinfo=UTC), days=3,
                     first_scheduled=since)  # fmt: skip
    closed = cell(result, "scrape__equities__india", "2026-01-15")
    assert closed.state == "closed"
    assert "closure listed in regions.yaml: Maharashtra municipal corporation elections" in (
        closed.detail
    )
    assert cell(result, "scrape__equities__europe", "2026-01-15").state == "missing"


def test_filters_and_readable_dags(project):
    runs = [scheduled_run("scrape__fx_rates__americas", date(2026, 11, 25), "America/New_York",
                          "failed", "x", 1)]  # fmt: skip
    failed_only = m.build(project, {}, runs, now=NOW, days=5, states=["failed"])
    assert [r.dag_id for r in failed_only.rows] == ["scrape__fx_rates__americas"]
    india = m.build(project, {}, (), now=NOW, days=5, regions=["india"], sites=["funds"])
    assert [r.dag_id for r in india.rows] == ["scrape__funds__india"]
    readable = m.build(project, {}, (), now=NOW, days=5, dag_ids={"scrape__funds__europe"})
    assert [r.dag_id for r in readable.rows] == ["scrape__funds__europe"]
    assert m.build(project, {}, (), now=NOW, days=5, dag_ids=set()).rows == []


def test_the_text_view_shows_every_row_the_legend_and_the_gaps(project):
    loads = [load(("equities", "americas", date(2026, 11, 25)), "a", 57)]
    result = m.build(project, loads, (), now=NOW, days=3, sites=["equities"],
                     first_scheduled=enabled(project))  # fmt: skip
    text = render(result)
    lines = text.splitlines()
    assert lines[0].startswith("Coverage of the last 3 trading dates, 2026-11-25 to 2026-11-27")
    assert lines[3].endswith("25 26 27")
    assert next(x for x in lines if x.startswith("equities / americas")).endswith(" #  -  .")
    assert "Legend: # complete, p partial, r running, F failed, ? missing, . scheduled, " \
        "_ never_due, - closed" in text  # fmt: skip
    assert "  missing  scrape__equities__india 2026-11-25: no run for this trading day" in lines


def test_a_fresh_stack_is_calm_before_the_first_scheduled_runs(project):
    """`make run` on a fresh stack: catchup is off, so each DAG's first scheduled run is the
    latest due date; the dates before it were never due, and are not gaps."""
    firsts = {}
    runs = []
    for i, (site, region) in enumerate(project.pairs()):
        dag_id = f"scrape__{site.name}__{region.name}"
        clock = RegionClock.of(region)
        day = clock.latest_due_day(NOW)
        run = scheduled_run(dag_id, day, region.timezone, "success", f"scheduled__{day}", i)
        runs.append(run)
        firsts[dag_id] = run.data_interval_start
    loads = [load((s.name, r.name, RegionClock.of(r).latest_due_day(NOW)), "x", 10)
             for s, r in project.pairs()]  # fmt: skip
    result = m.build(project, loads, runs, now=NOW, days=20, first_scheduled=firsts)
    counts = result.counts()
    assert counts["missing"] == 0 and counts["failed"] == 0 and result.gaps() == []
    assert counts["complete"] == len(list(project.pairs()))
    assert counts["never_due"] > 150
    before = cell(result, "scrape__equities__americas", "2026-11-24")
    assert before.state == "never_due"
    assert before.detail.startswith(
        "never due: before the DAG's first scheduled run, for 2026-11-25"
    )
    closed = cell(result, "scrape__equities__americas", "2026-11-26")
    assert (closed.state, closed.detail) == ("closed", "XNYS does not trade: Thanksgiving Day")
    text = render(result)
    assert "Gaps" not in text
    assert next(x for x in text.splitlines() if x.startswith("equities / americas")).endswith(
        " _  #  -  ."
    )


def test_never_due_only_before_the_first_scheduled_run_and_a_dag_without_one(project):
    fx = "scrape__fx_rates__americas"
    first = {fx: datetime(2026, 11, 24, 5, tzinfo=UTC)}  # midnight in New York: the 24th
    runs = [
        # A backfill of an earlier date that failed is a gap, never-due or not.
        m.Run(fx, "backfill__x", "failed", "backfill", datetime(2026, 11, 18, 5, tzinfo=UTC),
              datetime(2026, 11, 18, 5, tzinfo=UTC), None, {}, 3),
    ]  # fmt: skip
    result = m.build(project, (), runs, now=NOW, days=8, first_scheduled=first, sites=["fx_rates"])
    assert cell(result, fx, "2026-11-23").state == "never_due"
    assert cell(result, fx, "2026-11-18").state == "failed"
    assert cell(result, fx, "2026-11-24").state == "missing"
    assert cell(result, fx, "2026-11-25").state == "missing"
    assert [c.date for r, c in result.gaps() if r.dag_id == fx] == [
        "2026-11-18", "2026-11-24", "2026-11-25"]  # fmt: skip
    # No scheduled run at all: a DAG added and left paused.
    other = cell(result, "scrape__fx_rates__europe", "2026-11-25")
    assert other.state == "never_due"
    assert other.detail.startswith("never due: the DAG has had no scheduled run yet")
    assert m.NEVER_DUE in m.FILLABLE and m.NEVER_DUE not in m.GAPS


def test_a_usage_error_is_one_line_in_the_why_file(tmp_path, capsys):
    why = tmp_path / "coverage.why"
    with pytest.raises(SystemExit) as stopped:
        main(["--days", "0", "--why-file", str(why)])
    assert stopped.value.code == 2
    assert why.read_text() == "coverage: usage error: --days must be between 1 and 400, not 0\n"
    assert "usage: python -m offpeak.coverage" in capsys.readouterr().err


def test_make_coverage_ends_with_its_reason_not_makes_error_line(tmp_path):
    """make can exit non-zero only through a failed recipe ("make: *** [...] Error 1") or
    $(error): `make coverage` takes the second, with the reason as its words."""
    env = {**os.environ, "OFFPEAK_STATE_DIR": str(tmp_path)}
    done = subprocess.run(["make", "--no-print-directory", "coverage"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert re.fullmatch(
        rf"Makefile:\d+: \*\*\* no {re.escape(str(tmp_path))}/airflow.env: start the stack "
        r"with make run first\.  Stop\.\n",
        done.stderr,
    ), done.stderr
    assert "Error" not in done.stdout + done.stderr
