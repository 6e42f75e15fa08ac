"""Rollups: the sensor that waits for another DAG's run of the same trading date, and the
region and global summaries built from include/sql/rollups.sql."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.sensors.external_task import ExternalTaskSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from offpeak.config import Project

log = logging.getLogger(__name__)
GLOBAL = "global"


def rollup_dag_id(region: str) -> str:
    return f"rollup__{region}"


def rollup_clock(project: Project, region: str) -> Any:
    """The trading days a rollup runs on: the region's, or (``GLOBAL``) any region's."""
    from offpeak.schedule.tradingtime import GlobalClock, RegionClock

    if region == GLOBAL:
        return GlobalClock.of(project.rolled_up_regions(), project.rollups.global_delay_minutes)
    return RegionClock.of(project.regions[region])


def run_trading_date(project: Project, region: str, context: Any) -> date:
    """The trading date of a run of a site DAG or rollup of ``region`` (or ``GLOBAL``):
    conf, else the data interval, else the latest due day."""
    from offpeak.schedule.tradingtime import trading_date_from_context

    return trading_date_from_context(rollup_clock(project, region), context)


def rollup_logical_date(own_region: str, target: str, dag_run: Any) -> str:
    """Template macro for ExternalTaskMarker: the logical date of the ``target`` rollup (a
    region or ``GLOBAL``) for the trading date of this run of an ``own_region`` DAG. Works
    for runs without a logical date too (their trading date comes from conf or the clock)."""
    from offpeak.config import load_project

    project = load_project()
    context = {"dag_run": dag_run, "data_interval_start": dag_run.data_interval_start}
    day = run_trading_date(project, own_region, context)
    return rollup_clock(project, target).midnight(day).isoformat()


class TradingDateSensor(ExternalTaskSensor):
    """
    Wait for a task of another DAG on the same trading date.

    The upstream run is found by its logical date: the local midnight of this run's trading
    date in ``upstream_region``'s zone. The trading date comes from the run (conf, data
    interval, or for a run without a logical date the latest due day), so manual and REST runs
    wait for what an upstream will really have. When ``upstream_region`` does not trade on
    that date (a holiday there), nothing is waited for: the sensor succeeds at once and says
    why.

    :param scope: whose trading days this DAG runs on: a region name or ``"global"``
    :param upstream_region: the region of the upstream DAG
    """

    ui_color = "#dfe9f7"

    def __init__(self, *, scope: str, upstream_region: str, **kwargs: Any) -> None:
        super().__init__(execution_date_fn=self.upstream_logical_date, **kwargs)
        self.scope = scope
        self.upstream_region = upstream_region

    def _day_and_clock(self, context: Any) -> tuple[date, Any]:
        from offpeak.config import load_project

        project = load_project()
        day = run_trading_date(project, self.scope, context)
        return day, rollup_clock(project, self.upstream_region)

    def upstream_logical_date(self, logical_date: datetime, **context: Any) -> datetime:
        day, clock = self._day_and_clock(context)
        return clock.midnight(day)

    def upstream_closed(self, context: Any) -> bool:
        day, clock = self._day_and_clock(context)
        if clock.is_day(day):
            return False
        why = clock.calendar.holiday_name(day)
        self.log.info(
            "%s does not trade on %s (%s): not waiting for %s",
            self.upstream_region, day, why, self.external_dag_id,
        )  # fmt: skip
        return True

    def execute(self, context: Context) -> None:
        if not self.upstream_closed(context):
            super().execute(context)

    def poke(self, context: Context) -> bool:
        return self.upstream_closed(context) or super().poke(context)


def check_inputs(**context: Any) -> dict[str, str]:
    """The rollup's verdict (its last task, a teardown that always runs): fail if any other
    task of the run failed.

    ``fail_fast`` stops the other sensors as soon as one input fails, but it skips the tasks
    downstream, and Airflow judges a run by its leaves: without this task such a run would
    end "success"."""
    from airflow.sdk.exceptions import AirflowFailException

    ti, run_id = context["ti"], context["run_id"]
    others = [t for t in context["dag"].task_ids if t != ti.task_id]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=others, run_ids=[run_id])
    states = states.get(run_id, {})
    failed = {t: s for t, s in sorted(states.items()) if s in ("failed", "upstream_failed")}
    if failed:
        raise AirflowFailException(
            f"{ti.dag_id} {run_id}: {', '.join(f'{t} {s}' for t, s in failed.items())}; "
            "no summary was written for this date"
        )
    log.info("Every task of the rollup finished without failure: %s", states)
    return states


# ---------------------------------------------------------------------------- summaries


def _run(cur: Any, section: str, params: dict, **identifiers: Any) -> None:
    from psycopg import sql

    from offpeak.warehouse.load import _ident, schema_name, sql_sections

    for statement in sql_sections("rollups.sql")[section]:
        cur.execute(sql.SQL(statement).format(schema=_ident(schema_name()), **identifiers), params)


def _connect():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from offpeak.pipeline.tasks import warehouse_conn_id
    from offpeak.warehouse.load import ensure_schema

    conn = PostgresHook(postgres_conn_id=warehouse_conn_id()).get_conn()
    ensure_schema(conn)
    return conn


def summarize_region(region: str, **context: Any) -> dict[str, Any]:
    """Rebuild the region's rows of rollup_site_day and rollup_measure_day for the run's
    trading date, one transaction: per site the rows loaded and rejected, first and last load
    time, and min/max/avg of each measure field."""
    from offpeak.config import load_project
    from offpeak.warehouse.load import _ident, schema_name

    project = load_project()
    day = run_trading_date(project, region, context)
    params = {"region": region, "trading_date": day}
    sites = project.sites_of(region)
    conn = _connect()
    try:
        with conn.transaction(), conn.cursor() as cur:
            _run(cur, "reset_region", params)
            for site in sites:
                table = _ident(schema_name(), site.name)
                if not _table_exists(cur, site.name):
                    log.warning("Site %s has no table yet (never loaded): left out", site.name)
                    continue
                _run(cur, "site_day", {**params, "site": site.name}, site_table=table)
                for measure in (n for n, f in site.fields.items() if f.measure):
                    _run(
                        cur, "measure_day", {**params, "site": site.name, "measure": measure},
                        site_table=table, column=_ident(measure),
                    )  # fmt: skip
            _run(cur, "region_totals", params)
            rows, summarized = cur.fetchone()
    finally:
        conn.close()
    result = {"region": region, "trading_date": day.isoformat(), "sites": summarized,
              "rows_loaded": int(rows)}  # fmt: skip
    log.info("Region summary: %s", result)
    return result


def _table_exists(cur: Any, table: str) -> bool:
    from offpeak.warehouse.load import schema_name

    cur.execute("SELECT to_regclass(%s)", (f'"{schema_name()}"."{table}"',))
    return cur.fetchone()[0] is not None


def summarize_global(**context: Any) -> dict[str, Any]:
    """Rebuild rollup_global_day for the run's trading date from the region summaries of the
    regions that traded that day."""
    from offpeak.config import load_project
    from offpeak.schedule.tradingtime import trading_date_from_context

    project = load_project()
    clock = rollup_clock(project, GLOBAL)
    day = trading_date_from_context(clock, context)
    regions = [r.name for r in clock.trading_regions(day)]
    conn = _connect()
    try:
        with conn.transaction(), conn.cursor() as cur:
            _run(cur, "global_day", {"trading_date": day, "regions": regions})
            summarized = cur.rowcount
    finally:
        conn.close()
    result = {"trading_date": day.isoformat(), "regions": regions, "summarized": summarized}
    log.info("Global summary: %s", result)
    return result
