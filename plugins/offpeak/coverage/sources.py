"""Where the coverage matrix's facts come from: the warehouse's load audit and Airflow's
metadata DB (DAG runs, each DAG's first scheduled run, paused flags). Read-only."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from offpeak import settings
from offpeak.connections import warehouse_connection
from offpeak.coverage.matrix import Load, Run
from offpeak.partition import Partition

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def read_loads(since: date, until: date, sites: Iterable[str] | None = None) -> list[Load]:
    """The latest load_audit row of each (site, region, trading date) in [since, until], from
    the warehouse connection (settings.warehouse_conn_id). Empty when the warehouse has no
    audit table yet (nothing was ever loaded)."""
    from psycopg import sql

    table = sql.Identifier(settings.warehouse_schema(), "load_audit")
    query = sql.SQL(
        "SELECT DISTINCT ON (site, region, trading_date) site, region, trading_date, run_id,"
        " complete, rows_in_file, rows_rejected, rows_inserted, rows_updated, rows_unchanged,"
        " rows_deleted, loaded_at FROM {} WHERE trading_date BETWEEN %s AND %s"
        " AND (%s::text[] IS NULL OR site = ANY(%s::text[]))"
        " ORDER BY site, region, trading_date, id DESC"
    ).format(table)
    names = None if sites is None else list(sites)
    conn = warehouse_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT to_regclass(%s)",
                (f"{settings.warehouse_schema()}.load_audit",),
            )
            if cur.fetchone()[0] is None:
                return []
            cur.execute(query.as_string(conn), (since, until, names, names))
            return [
                Load(Partition(site, region, day, run_id), *rest)
                for site, region, day, run_id, *rest in cur.fetchall()
            ]
    finally:
        conn.close()


def read_runs(session: Session, dag_ids: Iterable[str], since: date) -> list[Run]:
    """The DAG runs of ``dag_ids`` that can fall on ``since`` or later. A run's trading date is
    never after its logical date's UTC day plus one (local midnight east of UTC), nor after
    its run_after for a run without a logical date."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import or_, select

    ids = list(dag_ids)
    if not ids:
        return []
    day = since - timedelta(days=2)
    floor = datetime(day.year, day.month, day.day, tzinfo=UTC)  # Airflow's columns: UTC
    rows = session.execute(
        select(
            DagRun.id,
            DagRun.dag_id,
            DagRun.run_id,
            DagRun.state,
            DagRun.run_type,
            DagRun.logical_date,
            DagRun.data_interval_start,
            DagRun.run_after,
            DagRun.conf,
        )
        .where(DagRun.dag_id.in_(ids))
        .where(or_(DagRun.logical_date >= floor, DagRun.run_after >= floor))
    ).all()
    return [
        Run(
            dag_id=r.dag_id,
            run_id=r.run_id,
            state=str(getattr(r.state, "value", r.state)),
            run_type=str(getattr(r.run_type, "value", r.run_type)),
            logical_date=r.logical_date,
            data_interval_start=r.data_interval_start,
            run_after=r.run_after,
            conf=r.conf,
            id=r.id,
        )
        for r in rows
    ]


def read_first_scheduled(session: Session, dag_ids: Iterable[str]) -> dict[str, datetime]:
    """The data interval start of each DAG's earliest scheduled run (its trading date, once
    read in the DAG's region): the dates before it were never due. A DAG that has had no
    scheduled run is left out. Only what the metadata DB still holds counts: after
    `airflow db clean` (maintenance__db_clean, 90 days by default) the earliest one kept."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType
    from sqlalchemy import func, select

    ids = list(dag_ids)
    if not ids:
        return {}
    query = (
        select(DagRun.dag_id, func.min(DagRun.data_interval_start))
        .where(DagRun.dag_id.in_(ids))
        .where(DagRun.run_type == DagRunType.SCHEDULED)
        .where(DagRun.data_interval_start.is_not(None))
        .group_by(DagRun.dag_id)
    )
    return dict(session.execute(query).all())


def read_paused(session: Session, dag_ids: Iterable[str]) -> dict[str, bool]:
    """Each DAG's paused flag."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    ids = list(dag_ids)
    if not ids:
        return {}
    query = select(DagModel.dag_id, DagModel.is_paused).where(DagModel.dag_id.in_(ids))
    return dict(session.execute(query).all())
