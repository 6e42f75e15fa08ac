"""`airflow dags test <dag_id> <date>` through Airflow's own CLI on one DAG of every shipped kind,
with the scrape DAGs' Deadline Alert on as in production (offpeak.compat)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from offpeak.config import load_project
from offpeak.naming import GLOBAL, rollup_dag_id, scrape_dag_id
from offpeak.rollups.dates import rollup_clock
from support import REPO
from support.dagsync import AIRFLOW, register_dags
from support.queries import load_audit, own_schema

PROJECT = load_project()
# New Year's Day 2026: of the rolled-up regions only india (XBOM) trades, so rollup__global
# waits for rollup__india alone and needs 2 scrape runs, not the 11 of an ordinary day.
ONE_REGION_DAY, ONE_REGION = date(2026, 1, 1), "india"
# The spider kind india has no site of (json_api: fx_rates) runs on an ordinary day.
FX_DAY = date(2026, 11, 18)  # a Wednesday; London midnight is UTC midnight in November
INDIA_MIDNIGHT = rollup_clock(PROJECT, ONE_REGION).midnight(ONE_REGION_DAY).isoformat()


@dataclass(frozen=True)
class Run:
    """One `airflow dags test` as a user types it: the logical date is the scheduled run's
    (the region's local midnight of the trading date), so the rollups find their inputs."""

    dag_id: str
    logical_date: str
    conf: dict | None = None
    needs: tuple[str, ...] = ()


CRAWL_NOW = {"ignore_window": True}  # the tests run at any hour, not in the regions' windows
SCRAPES = {
    "html_table": Run(scrape_dag_id("equities", ONE_REGION), INDIA_MIDNIGHT, CRAWL_NOW),
    "listing_detail": Run(scrape_dag_id("funds", ONE_REGION), INDIA_MIDNIGHT, CRAWL_NOW),
    "json_api": Run(scrape_dag_id("fx_rates", "europe"), FX_DAY.isoformat(), CRAWL_NOW),
}
REGION_ROLLUP = Run(
    rollup_dag_id(ONE_REGION),
    INDIA_MIDNIGHT,
    needs=(SCRAPES["html_table"].dag_id, SCRAPES["listing_detail"].dag_id),
)
GLOBAL_ROLLUP = Run(
    rollup_dag_id(GLOBAL), ONE_REGION_DAY.isoformat(), needs=(REGION_ROLLUP.dag_id,)
)
PLAN = [*SCRAPES.values(), REGION_ROLLUP, GLOBAL_ROLLUP]
AT_ONCE, TIMEOUT = 3, 300  # processes; seconds for one run


@dataclass
class Outcome:
    run: Run
    returncode: int | None  # None: not run, an upstream failed; -9: killed at TIMEOUT
    output: str
    seconds: float

    def tail(self) -> str:
        return f"{self.run.dag_id} exit {self.returncode}, output ends:\n{self.output[-4000:]}"


def test_the_plan_covers_every_shipped_kind_and_its_dates_hold():
    assert set(SCRAPES) == {site.kind for site in PROJECT.sites.values()}
    for kind, run in SCRAPES.items():
        site = PROJECT.sites[run.dag_id.split("__")[1]]
        assert site.kind == kind
    trading = [r.name for r in rollup_clock(PROJECT, GLOBAL).trading_regions(ONE_REGION_DAY)]
    assert trading == [ONE_REGION], f"pick another one-region day: {ONE_REGION_DAY} has {trading}"
    assert rollup_clock(PROJECT, "europe").is_day(FX_DAY)


@pytest.fixture(scope="module")
def cli_schema(pg):
    """A warehouse schema of this module's own, dropped at the end."""
    with own_schema(pg, "t_cli") as name:
        yield name


@pytest.fixture(scope="module")
def cli_runs(airflow_db, cli_schema, tmp_path_factory) -> dict[str, Outcome]:
    """Every run of PLAN, one `airflow dags test` process each (20 to 30 s of CPU here, most
    of it Airflow's start-up and its in-process execution API): a run starts once the runs it
    needs have succeeded, AT_ONCE at most at a time."""
    env = {**os.environ, "OFFPEAK_DEADLINE_ALERTS": "true", "OFFPEAK_WAREHOUSE_SCHEMA": cli_schema}
    logs = tmp_path_factory.mktemp("airflow-dags-test")
    register_dags(env)  # the processes below would race to register them
    outcomes: dict[str, Outcome] = {}
    running: dict[str, tuple[subprocess.Popen, Path, float]] = {}
    pending = list(PLAN)
    try:
        while pending or running:
            for run in list(pending):
                failed = [n for n in run.needs if n in outcomes and outcomes[n].returncode != 0]
                if failed:  # a rollup would wait for its missing input until its timeout
                    outcomes[run.dag_id] = Outcome(run, None, f"not run: {failed} failed", 0.0)
                    pending.remove(run)
                elif all(n in outcomes for n in run.needs) and len(running) < AT_ONCE:
                    running[run.dag_id] = _start(run, env, logs / f"{run.dag_id}.log")
                    pending.remove(run)
            for dag_id, (proc, log, started) in list(running.items()):
                seconds = time.monotonic() - started
                if proc.poll() is None and seconds > TIMEOUT:
                    os.killpg(proc.pid, signal.SIGKILL)  # the crawl subprocess too
                    proc.wait()
                if proc.returncode is not None:
                    run = next(r for r in PLAN if r.dag_id == dag_id)
                    outcomes[dag_id] = Outcome(run, proc.returncode, log.read_text(), seconds)
                    del running[dag_id]
            time.sleep(0.2)
    finally:
        for proc, _, _ in running.values():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return outcomes


def _start(run: Run, env: dict, log: Path) -> tuple[subprocess.Popen, Path, float]:
    cmd = [str(AIRFLOW), "dags", "test", run.dag_id, run.logical_date]
    if run.conf:
        cmd += ["--conf", json.dumps(run.conf)]
    with log.open("w") as out:  # the child keeps its own copy
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, log, time.monotonic()


def dag_run(pg, run: Run) -> dict:
    """The run's row in the metadata DB, with the deadline alerts of its DAG version and the
    deadlines still pending for it."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(pg.uri("airflow"), row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT id, run_id, state, created_dag_version_id FROM dag_run "
            "WHERE dag_id = %s AND logical_date = %s",
            (run.dag_id, datetime.fromisoformat(_aware(run.logical_date))),
        ).fetchone()
        assert row is not None, f"no run of {run.dag_id} at {run.logical_date}"
        row["alerts"] = [
            r["name"]
            for r in conn.execute(
                "SELECT a.name FROM deadline_alert a JOIN serialized_dag s "
                "ON s.id = a.serialized_dag_id WHERE s.dag_version_id = %s",
                (row["created_dag_version_id"],),
            )
        ]
        row["pending_deadlines"] = conn.execute(
            "SELECT count(*) AS n FROM deadline WHERE dagrun_id = %s", (row["id"],)
        ).fetchone()["n"]
    return row


def _aware(logical_date: str) -> str:
    """A plain date on the CLI is UTC midnight."""
    return logical_date if "T" in logical_date else f"{logical_date}T00:00:00+00:00"


def assert_succeeded(outcome: Outcome, pg) -> dict:
    assert outcome.returncode == 0, outcome.tail()
    row = dag_run(pg, outcome.run)
    assert row["state"] == "success", outcome.tail()
    return row


@pytest.mark.parametrize("kind", sorted(SCRAPES))
def test_dags_test_runs_a_scrape_dag_with_its_deadline_and_loads_rows(
    kind, cli_runs, cli_schema, pg, warehouse
):
    outcome = cli_runs[SCRAPES[kind].dag_id]
    row = assert_succeeded(outcome, pg)
    # The run had the deadline configured as in production, and left no deadline behind for a
    # scheduler to fire later.
    assert row["alerts"] == ["window_end"]
    assert row["pending_deadlines"] == 0

    _, site, region = outcome.run.dag_id.split("__")
    day = ONE_REGION_DAY if region == ONE_REGION else FX_DAY
    [audit] = load_audit(warehouse, site, region, day, schema=cli_schema)
    assert audit["run_id"] == row["run_id"]
    loaded = warehouse.execute(
        f"SELECT count(*) FROM {cli_schema}.{site} WHERE region = %s AND trading_date = %s",
        (region, day),
    ).fetchone()[0]
    assert loaded > 0
    assert loaded == audit["rows_inserted"]


def test_dags_test_runs_a_region_rollup_over_the_loads_of_its_sites(
    cli_runs, cli_schema, pg, warehouse
):
    assert_succeeded(cli_runs[REGION_ROLLUP.dag_id], pg)
    rolled = dict(
        warehouse.execute(
            f"SELECT site, rows_loaded FROM {cli_schema}.rollup_site_day "
            "WHERE region = %s AND trading_date = %s",
            (ONE_REGION, ONE_REGION_DAY),
        ).fetchall()
    )
    loaded = {
        site.name: warehouse.execute(
            f"SELECT count(*) FROM {cli_schema}.{site.name} "
            "WHERE region = %s AND trading_date = %s",
            (ONE_REGION, ONE_REGION_DAY),
        ).fetchone()[0]
        for site in PROJECT.sites_of(ONE_REGION)
    }
    assert rolled == loaded
    assert all(n > 0 for n in rolled.values())


def test_dags_test_runs_the_global_rollup_over_the_region_rollups(
    cli_runs, cli_schema, pg, warehouse
):
    assert_succeeded(cli_runs[GLOBAL_ROLLUP.dag_id], pg)
    rows = warehouse.execute(
        f"SELECT region, sites, rows_loaded FROM {cli_schema}.rollup_global_day "
        "WHERE trading_date = %s",
        (ONE_REGION_DAY,),
    ).fetchall()
    expected = warehouse.execute(
        f"SELECT sum(rows_loaded) FROM {cli_schema}.rollup_site_day "
        "WHERE region = %s AND trading_date = %s",
        (ONE_REGION, ONE_REGION_DAY),
    ).fetchone()[0]
    assert rows == [(ONE_REGION, len(PROJECT.sites_of(ONE_REGION)), expected)]
