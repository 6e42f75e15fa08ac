"""The off-peak timetable under a real scheduler, dag-processor and triggerer: backfills create
exactly the trading days and load them once; a late run waits for its window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

BACKFILL_DAG = "scrape__equities__americas"
LATE_DAG = "scrape__fx_rates__asia_pacific"  # no other test unpauses it


def backfill(stack, *extra: str) -> int:
    """`airflow backfill create` over 2026-09-03..2026-09-08; returns the backfill's id."""
    start, end, conf = date(2026, 9, 3), date(2026, 9, 8), {"ignore_window": True}
    return stack.backfill(BACKFILL_DAG, start, end, conf, *extra)


def backfill_runs(stack, backfill_id: int) -> list[tuple]:
    return stack.backfill_runs(backfill_id, "r.run_id, r.state, r.data_interval_start, r.run_type")


def wait_backfill_done(stack, backfill_id: int, runs: int) -> list[tuple]:
    """Until the scheduler has finished every run and marked the backfill completed."""

    def done():
        rows = backfill_runs(stack, backfill_id)
        finished = [r for r in rows if r[1] in ("success", "failed")]
        (completed,) = stack.query("SELECT completed_at FROM backfill WHERE id = %s", backfill_id)
        return rows if len(finished) == len(rows) == runs and completed[0] else None

    return stack.wait(done, 300, f"the {runs} runs of backfill {backfill_id} to finish", every=2)


def rows_per_date(warehouse) -> dict[str, int]:
    found = warehouse.execute(
        "SELECT trading_date, count(*) FROM scraped.equities WHERE region = 'americas' "
        "AND trading_date BETWEEN '2026-09-01' AND '2026-09-10' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {d.isoformat(): n for d, n in found}


def test_backfill_creates_the_trading_days_and_reprocessing_adds_no_rows(stack, warehouse):
    """2026-09-03 (Thu) .. 2026-09-08 (Tue) spans a weekend and Labor Day (Mon 09-07)."""
    stack.airflow("dags", "unpause", BACKFILL_DAG)
    first = backfill(stack)
    runs = wait_backfill_done(stack, first, 3)
    ny = ZoneInfo("America/New_York")
    trading_dates = [r[2].astimezone(ny).date().isoformat() for r in runs]
    assert trading_dates == ["2026-09-03", "2026-09-04", "2026-09-08"]
    assert {r[1] for r in runs} == {"success"}, runs
    assert {r[3] for r in runs} == {"backfill"}
    assert rows_per_date(warehouse) == dict.fromkeys(trading_dates, 90)

    for run_id, *_ in runs:
        pointer = stack.xcom(BACKFILL_DAG, run_id, "scrape")
        # ignore_window: the crawl ran at once, hours before the (closed) window opens.
        assert datetime.fromisoformat(pointer["crawl_started_at"]) < stack.windows_open_at
        assert pointer["trading_date"] in trading_dates and pointer["complete"] is True

    second = backfill(stack, "--reprocess-behavior", "completed")
    again = wait_backfill_done(stack, second, 3)
    assert {r[1] for r in again} == {"success"}
    assert [r[2] for r in again] == [r[2] for r in runs]  # the same three trading days
    assert rows_per_date(warehouse) == dict.fromkeys(trading_dates, 90)
    audit = warehouse.execute(
        "SELECT trading_date, rows_inserted, rows_unchanged, rows_deleted FROM scraped.load_audit"
        " WHERE site = 'equities' AND region = 'americas' AND trading_date < '2026-10-01'"
        " ORDER BY id"
    ).fetchall()
    # Each backfill's runs load in parallel: compare the first three and the last three as sets.
    audit = [(d.isoformat(), i, u, x) for d, i, u, x in audit]
    assert sorted(audit[:3]) == [(d, 90, 0, 0) for d in trading_dates]
    assert sorted(audit[3:]) == [(d, 0, 90, 0) for d in trading_dates]


def test_a_late_run_waits_for_its_window_without_a_worker_slot(stack):
    """Tokyo's window is moved to open 45 s from now; the DAG is unpaused, so the scheduler
    makes its latest-session run at once: the scrape task defers until the window opens."""
    opens = (datetime.now(tz=UTC) + timedelta(seconds=45)).replace(microsecond=0)
    stack.edit_regions(asia_pacific=(opens, opens + timedelta(minutes=15)))
    stack.airflow("dags", "unpause", LATE_DAG)

    def one(sql: str, *params):
        rows = stack.query(sql, *params)
        return rows[0][0] if rows else None

    run_id = stack.wait(
        lambda: one(
            "SELECT run_id FROM dag_run WHERE dag_id = %s AND run_type = 'scheduled' "
            "ORDER BY id LIMIT 1",
            LATE_DAG,
        ),
        60,
        f"a scheduled run of {LATE_DAG}",
    )
    # The scheduler names the run by its trading date (OffPeakTimetable.generate_run_id): the
    # local date of its data interval's start, then the window's opening in UTC.
    ((start, run_after),) = stack.query(
        "SELECT data_interval_start, run_after FROM dag_run WHERE dag_id = %s AND run_id = %s",
        LATE_DAG,
        run_id,
    )
    day = start.astimezone(ZoneInfo("Asia/Tokyo")).date()
    assert run_id == f"scheduled__{day.isoformat()}__{run_after.astimezone(UTC).isoformat()}"
    scrape_sql = (
        "SELECT state FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = 'scrape'"
    )
    stack.wait(
        lambda: one(scrape_sql, LATE_DAG, run_id) == "deferred",
        40,
        "the scrape task to defer",
        every=0.5,
    )
    assert datetime.now(tz=UTC) < opens, "the task deferred only after the window opened"
    trigger = one(
        "SELECT t.classpath FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
        "WHERE ti.dag_id = %s AND ti.run_id = %s",
        LATE_DAG,
        run_id,
    )
    assert trigger and trigger.endswith("DateTimeTrigger"), trigger

    run_sql = "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s"
    final = stack.wait(
        lambda: (
            one(run_sql, LATE_DAG, run_id) in ("success", "failed")
            and one(run_sql, LATE_DAG, run_id)
        ),
        180,
        f"{run_id} to finish",
    )
    assert final == "success"
    pointer = stack.xcom(LATE_DAG, run_id, "scrape")
    assert datetime.fromisoformat(pointer["crawl_started_at"]) >= opens
    assert date.fromisoformat(pointer["trading_date"]).weekday() < 5
