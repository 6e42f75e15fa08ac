"""Rollup summaries: the region and global summary tables, built from include/sql/rollups.sql."""

from __future__ import annotations

import logging
from typing import Any

from offpeak import config, params, retries
from offpeak.connections import warehouse_connection
from offpeak.naming import GLOBAL
from offpeak.rollups.dates import rollup_clock
from offpeak.warehouse.schema import ensure_schema
from offpeak.warehouse.sql import ident, schema_name, sql_sections

log = logging.getLogger(__name__)


def _run(cur: Any, section: str, params: dict, **identifiers: Any) -> None:
    from psycopg import sql

    for statement in sql_sections("rollups.sql")[section]:
        cur.execute(sql.SQL(statement).format(schema=ident(schema_name()), **identifiers), params)


def _connect():
    conn = warehouse_connection()
    ensure_schema(conn)
    return conn


@retries.fail_fast()
def summarize_region(region: str, **context: Any) -> dict[str, Any]:
    """Rebuild the region's rows of rollup_site_day and rollup_measure_day for the run's
    trading date, one transaction: per site the rows loaded and rejected, first and last load
    time, and min/max/avg of each measure field."""
    project = config.load_project()
    day = params.trading_date(rollup_clock(project, region), context)
    sql_params = {"region": region, "trading_date": day}
    sites = project.sites_of(region)
    conn = _connect()
    try:
        with conn.transaction(), conn.cursor() as cur:
            _run(cur, "reset_region", sql_params)
            latest = _latest_loads(cur, [s.name for s in sites], region, day)
            not_loaded = sorted({s.name for s in sites} - set(latest))
            if not_loaded:
                log.warning(
                    "No load of %s for %s %s (its load was skipped: an open circuit breaker or "
                    "a dry run, or it never ran): left out of this summary",
                    ", ".join(not_loaded), region, day,
                )  # fmt: skip
            for site in sites:
                if site.name not in latest:
                    continue
                table = ident(schema_name(), site.name)
                _run(cur, "site_day", {**sql_params, "site": site.name}, site_table=table)
                for measure in (n for n, f in site.fields.items() if f.measure):
                    _run(
                        cur, "measure_day",
                        {**sql_params, "site": site.name, "measure": measure},
                        site_table=table, column=ident(measure),
                    )  # fmt: skip
            _run(cur, "region_totals", sql_params)
            rows, summarized = cur.fetchone()
    finally:
        conn.close()
    partial = [load for _, load in sorted(latest.items()) if not load["complete"]]
    if partial and project.alerts.partial == "digest":
        from offpeak.alerts.notifier import partial_digest

        partial_digest(
            project.alerts.http_conn_id, region=region, trading_date=day.isoformat(),
            partial=partial,
        )  # fmt: skip
    result = {"region": region, "trading_date": day.isoformat(), "sites": summarized,
              "rows_loaded": int(rows), "sites_not_loaded": not_loaded,
              "sites_partial": [p["site"] for p in partial]}  # fmt: skip
    log.info("Region summary: %s", result)
    return result


def _latest_loads(cur: Any, sites: list[str], region: str, day: Any) -> dict[str, dict]:
    """The latest load_audit row of (site, region, day) for each of ``sites`` that has one:
    whether it was complete, the rows the partition holds, and its run. A site left out has
    no load of that date (skipped, or never run)."""
    from psycopg import sql

    if not sites or not _table_exists(cur, "load_audit"):
        return {}
    cur.execute(
        sql.SQL(
            "SELECT DISTINCT ON (site) site, complete, rows_inserted + rows_updated"
            " + rows_unchanged, run_id FROM {} WHERE region = %s AND trading_date = %s"
            " AND site = ANY(%s) ORDER BY site, id DESC"
        ).format(ident(schema_name(), "load_audit")),
        (region, day, sites),
    )
    return {
        site: {"site": site, "complete": complete, "rows": int(rows), "run_id": run_id}
        for site, complete, rows, run_id in cur.fetchall()
    }


def _table_exists(cur: Any, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s)", (f'"{schema_name()}"."{table}"',))
    return cur.fetchone()[0] is not None


@retries.fail_fast()
def summarize_global(**context: Any) -> dict[str, Any]:
    """Rebuild rollup_global_day for the run's trading date from the region summaries of the
    regions that traded that day."""
    project = config.load_project()
    clock = rollup_clock(project, GLOBAL)
    day = params.trading_date(clock, context)
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
