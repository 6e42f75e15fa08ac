"""maintenance__db_clean with dag.test() on the session's metadata DB: what one scrape run and
one region rollup run add to each of Airflow's tables (the figures of
docs/metadata-retention.md, written to test-artifacts/metadata-rows.json), then the purge of
runs older than the retention period, keeping the recent ones and the warehouse's load_audit."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from offpeak.config import load_project
from offpeak.naming import DB_CLEAN_DAG_ID, rollup_dag_id, scrape_dag_id
from offpeak.rollups.dates import rollup_clock
from support import REPO
from support.queries import load_audit

PROJECT = load_project()
REGION = "india"  # two sites (equities, funds): rollup__india waits for both
SITES = [s.name for s in PROJECT.sites_of(REGION)]
RETENTION = 90
NOW = datetime.now(UTC)
# dag.test() gives a run the start_date of its logical date (the scheduler: the time it
# started), and `airflow db clean` goes by start_date: the recent run is of a trading date
# inside the retention, the old one of a date before it, and each of the old run's other
# timestamps (task starts, XComs, log lines: the wall clock) is moved back AGE as well.
OLD_DAY = date(2026, 3, 11)  # a Wednesday
AGE = timedelta(days=400)


def _recent_day() -> date:
    day = NOW.date() - timedelta(days=10)
    while not rollup_clock(PROJECT, REGION).is_day(day):
        day -= timedelta(days=1)
    return day


RECENT_DAY = _recent_day()
CRAWL_NOW = {"ignore_window": True}


def midnight(day: date) -> datetime:
    """The scheduled run's logical date: the region's local midnight of the trading date."""
    return rollup_clock(PROJECT, REGION).midnight(day)


def test_the_chosen_days_are_trading_days_of_the_region():
    clock = rollup_clock(PROJECT, REGION)
    assert clock.is_day(OLD_DAY) and clock.is_day(RECENT_DAY)
    assert SITES == ["equities", "funds"]


def metadata(pg):
    import psycopg

    return psycopg.connect(pg.uri("airflow"), autocommit=True)


def table_stats(pg) -> dict[str, tuple[int, int]]:
    """``{table: (rows, pg_total_relation_size)}`` for every table of the metadata DB."""
    with metadata(pg) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            t: conn.execute(
                f'SELECT count(*), pg_total_relation_size(\'"{t}"\') FROM "{t}"'
            ).fetchone()
            for t in tables
        }


def row_bytes(pg, tables) -> dict[str, float]:
    """The average stored width of a row (pg_column_size of the whole row) of each table."""
    with metadata(pg) as conn:
        return {
            t: float(conn.execute(f'SELECT coalesce(avg(pg_column_size(t.*)), 0) FROM "{t}" t')
                     .fetchone()[0])
            for t in tables
        }  # fmt: skip


def added(before: dict, after: dict) -> dict[str, int]:
    return {
        t: after[t][0] - before.get(t, (0, 0))[0]
        for t in after
        if after[t][0] != before.get(t, (0, 0))[0]
    }


def grown(before: dict, after: dict) -> dict[str, int]:
    return {
        t: after[t][1] - before.get(t, (0, 0))[1]
        for t in after
        if after[t][1] != before.get(t, (0, 0))[1]
    }


def age_runs(pg, runs: list[tuple[str, str]], by: timedelta) -> None:
    """Move every timestamp of these (dag_id, run_id) runs ``by`` into the past, in every table
    that names a run, as if they had run then: `airflow db clean` reads only those columns."""
    with metadata(pg) as conn:
        cols = conn.execute(
            "SELECT c.table_name, array_agg(c.column_name::text) FILTER (WHERE c.data_type "
            "LIKE 'timestamp%%') FROM information_schema.columns c WHERE c.table_schema = "
            "'public' GROUP BY c.table_name HAVING bool_or(c.column_name = 'dag_id') "
            "AND bool_or(c.column_name = 'run_id')"
        ).fetchall()
        for table, stamps in cols:
            if not stamps:
                continue
            sets = ", ".join(f'"{c}" = "{c}" - %(by)s' for c in stamps)
            for dag_id, run_id in runs:
                conn.execute(
                    f'UPDATE "{table}" SET {sets} WHERE dag_id = %(d)s AND run_id = %(r)s',
                    {"by": by, "d": dag_id, "r": run_id},
                )
        for dag_id, run_id in runs:
            conn.execute(
                "UPDATE deadline SET deadline_time = deadline_time - %s WHERE dagrun_id IN "
                "(SELECT id FROM dag_run WHERE dag_id = %s AND run_id = %s)",
                (by, dag_id, run_id),
            )


def run_rows(pg, dag_id: str, run_id: str) -> dict[str, int]:
    """What the metadata DB still holds of one run."""
    with metadata(pg) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)
            ).fetchone()[0]
            for table in ("dag_run", "task_instance", "task_instance_history", "xcom", "log")
        }


@pytest.fixture(scope="module")
def own_schema(pg):
    """A warehouse schema of this module's own: the runs' rows never meet the tiers that count
    the shared ``scraped`` schema's partitions (test_pipeline's)."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFPEAK_WAREHOUSE_SCHEMA", name)
        yield name
    import psycopg

    with psycopg.connect(pg.uri("warehouse"), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(scope="module")
def old_and_recent(dagbag, pg, own_schema):
    """Two scrape runs and the region rollup for OLD_DAY, measured table by table and then
    aged by AGE; one scrape run for RECENT_DAY left as it is. ``{"old": [...], "recent":
    (dag_id, run_id), "measured": {...}}``."""

    def test(dag_id: str, day: date, conf: dict | None = None):
        # What dag.test() and the retries change on the session DagBag's tasks is put back
        # here: conftest's _task_state_restored does it per test, after this module fixture.
        dag = dagbag.get_dag(dag_id)
        saved = [(t, copy.deepcopy(t.params), t.retries) for t in dag.tasks]
        for task in dag.tasks:
            task.retries = 0
        try:
            run = dag.test(logical_date=midnight(day), run_conf=conf)
        finally:
            for task, params, retries in saved:
                task.params, task.retries = params, retries
        assert run.state == "success", f"{dag_id} {day}: {run.state}"
        return dag_id, run.run_id

    stats = [table_stats(pg)]
    old = []
    for site in SITES:
        old.append(test(scrape_dag_id(site, REGION), OLD_DAY, CRAWL_NOW))
        stats.append(table_stats(pg))
    old.append(test(rollup_dag_id(REGION), OLD_DAY))
    stats.append(table_stats(pg))
    scrape_runs = [added(stats[i], stats[i + 1]) for i in range(len(SITES))]
    rollup_run = added(stats[-2], stats[-1])
    measured = {
        "scrape_run_rows": scrape_runs,
        "rollup_run_rows": rollup_run,
        "rollup_sensors": len(SITES),
        "rollup_tasks": [t.task_id for t in dagbag.get_dag(rollup_dag_id(REGION)).tasks],
        "bytes_grown_by_3_runs": grown(stats[0], stats[-1]),
        "row_bytes": row_bytes(pg, sorted(set(rollup_run) | set(scrape_runs[0]))),
    }
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "metadata-rows.json").write_text(json.dumps(measured, indent=2))
    age_runs(pg, old, AGE)
    recent = test(scrape_dag_id(SITES[0], REGION), RECENT_DAY, CRAWL_NOW)
    return {"old": old, "recent": recent, "measured": measured}


def test_a_scrape_run_adds_one_dag_run_and_its_four_task_instances(old_and_recent):
    measured = old_and_recent["measured"]
    for rows in measured["scrape_run_rows"]:
        assert rows["dag_run"] == 1
        assert rows["task_instance"] == 4  # scrape, transform, load, mark_rollup
        assert rows["xcom"] >= 3  # scrape, transform and load return their counts
    # The rollup: one task instance per task, a sensor per site of the region among them.
    rollup = measured["rollup_run_rows"]
    assert rollup["dag_run"] == 1
    assert rollup["task_instance"] == len(measured["rollup_tasks"]) == len(SITES) + 3


def clean(dagbag, monkeypatch, days: str | None):
    """dag.test() maintenance__db_clean with OFFPEAK_METADATA_RETENTION_DAYS ``days``, and the
    environment of a worker's task process: Airflow 3 replaces its metadata DB setting
    (supervisor.block_orm_access), so the purge must reach the DB through the connection."""
    if days is None:
        monkeypatch.delenv("OFFPEAK_METADATA_RETENTION_DAYS", raising=False)
    else:
        monkeypatch.setenv("OFFPEAK_METADATA_RETENTION_DAYS", days)
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN"):
        monkeypatch.setenv(name, "airflow-db-not-allowed:///")
    dag = dagbag.get_dag(DB_CLEAN_DAG_ID)
    assert dag is not None, sorted(dagbag.dags)
    for task in dag.tasks:
        task.retries = 0
    return dag.test(logical_date=NOW)


def test_a_missing_metadata_connection_fails_the_run_saying_what_to_define(
    old_and_recent, dagbag, pg, monkeypatch, capsys
):
    dag_id, run_id = old_and_recent["old"][0]
    kept = run_rows(pg, dag_id, run_id)
    monkeypatch.setenv("OFFPEAK_METADATA_CONN_ID", "no_such_metadb")
    capsys.readouterr()
    run = clean(dagbag, monkeypatch, str(RETENTION))
    assert run.state == "failed"
    log = capsys.readouterr().out
    assert "no Airflow connection 'no_such_metadb' (OFFPEAK_METADATA_CONN_ID)" in log
    assert "AIRFLOW_CONN_NO_SUCH_METADB=postgresql+psycopg2://" in log
    assert run_rows(pg, dag_id, run_id) == kept


def test_an_invalid_retention_fails_the_run_naming_the_setting_and_purges_nothing(
    old_and_recent, dagbag, pg, monkeypatch, capsys
):
    dag_id, run_id = old_and_recent["old"][0]
    kept = run_rows(pg, dag_id, run_id)
    for bad in ("ninety", "7"):
        capsys.readouterr()
        run = clean(dagbag, monkeypatch, bad)
        assert run.state == "failed"
        # The task's log (dag.test() prints it) says which setting is wrong and why.
        log = capsys.readouterr().out
        assert f"OFFPEAK_METADATA_RETENTION_DAYS={bad!r} is not a whole number of days" in log
        assert run_rows(pg, dag_id, run_id) == kept


def test_the_purge_removes_what_ran_before_the_retention_and_keeps_the_rest(
    old_and_recent, dagbag, pg, warehouse, monkeypatch, own_schema
):
    recent_id, recent_run = old_and_recent["recent"]
    recent_rows = run_rows(pg, recent_id, recent_run)
    assert recent_rows["dag_run"] == 1 and recent_rows["task_instance"] == 4
    for dag_id, run_id in old_and_recent["old"]:
        assert run_rows(pg, dag_id, run_id)["task_instance"] > 0  # there to be purged

    # As in production it purges the whole DB: also the older dag.test() runs of test modules
    # that ran before this one (they have checked theirs); later modules make their own.
    run = clean(dagbag, monkeypatch, str(RETENTION))
    assert run.state == "success"

    for dag_id, run_id in old_and_recent["old"]:
        assert run_rows(pg, dag_id, run_id) == {
            "dag_run": 0, "task_instance": 0, "task_instance_history": 0, "xcom": 0, "log": 0
        }, dag_id  # fmt: skip
    assert run_rows(pg, recent_id, recent_run) == recent_rows
    # The job says what it did: the cut-off, and the old runs among the rows it deleted.
    with metadata(pg) as conn:
        [report] = conn.execute(
            "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = 'db_clean'",
            (DB_CLEAN_DAG_ID, run.run_id),
        ).fetchone()
    report = json.loads(report) if isinstance(report, str) else report
    assert report["retention_days"] == RETENTION
    assert datetime.fromisoformat(report["before"]) == run.run_after - timedelta(days=RETENTION)
    assert report["deleted"]["dag_run"] >= len(old_and_recent["old"])
    # The warehouse keeps every load of the purged runs: the Coverage page still shows them.
    for site in SITES:
        [audit] = load_audit(warehouse, site, REGION, OLD_DAY, schema=own_schema)
        assert audit["rows_inserted"] > 0
