"""The coverage matrix from the live sources, and the backfills that fill its gaps: what the
page's API and the command line both call, so they show the same thing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from offpeak.config import load_project
from offpeak.coverage import matrix as m
from offpeak.coverage.sources import read_first_scheduled, read_loads, read_paused, read_runs
from offpeak.naming import scrape_dag_id
from offpeak.schedule.tradingtime import RegionClock

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def current_matrix(
    session: Session,
    *,
    days: int = m.DEFAULT_DAYS,
    sites: Iterable[str] = (),
    regions: Iterable[str] = (),
    states: Iterable[str] = (),
    dag_ids: Iterable[str] | None = None,
    now: datetime | None = None,
) -> m.Matrix:
    """The matrix now, from the config, the warehouse's load audit and Airflow's runs."""
    project = load_project()
    unknown = sorted(set(states) - set(m.STATES))
    if unknown:
        raise ValueError(f"unknown state(s) {unknown}: the states are {', '.join(m.STATES)}")
    shown = m.frame(project, now=now, days=days, sites=sites, regions=regions, dag_ids=dag_ids)
    if not shown.dates:
        return shown.fill((), ())
    first, last = shown.dates[0], shown.dates[-1]
    loads = read_loads(first, last, sorted({s.name for s, _ in shown.pairs}))
    runs = read_runs(session, shown.dag_ids, first)
    return shown.fill(
        loads,
        runs,
        paused=read_paused(session, shown.dag_ids),
        first_scheduled=read_first_scheduled(session, shown.dag_ids),
        states=states,
    )


def plan_backfills(
    session: Session,
    cells: Iterable[tuple[str, date]],
    *,
    reprocess_behavior: str = "failed",
    ignore_window: bool = False,
) -> list[dict[str, Any]]:
    """One ``POST /api/v2/backfills`` body per DAG, from its first to its last selected
    trading date (Airflow runs one backfill of a DAG at a time). Days in between that were
    not selected are left to ``reprocess_behavior``: ``none`` creates only runs that do not
    exist, ``failed`` also re-runs failed ones, ``completed`` re-runs every day.

    A bound is the trading date at midnight UTC, which the off-peak timetable reads as that
    trading date in the DAG's own region (docs/operating.md "Backfill"). ValueError naming the
    DAG and the date for one that is not a (site, region) DAG or not a trading day of its
    region."""
    project = load_project()
    region_of = {scrape_dag_id(s.name, r.name): r for s, r in project.pairs()}
    wanted: dict[str, set[date]] = {}
    for dag_id, day in cells:
        region = region_of.get(dag_id)
        if region is None:
            raise ValueError(f"{dag_id} is not a scrape DAG of the config")
        clock = RegionClock.of(region)
        if not clock.is_day(day):
            raise ValueError(
                f"{dag_id}: {day} is not a trading day of {region.exchange}: "
                f"{clock.why_closed(day)}"
            )
        wanted.setdefault(dag_id, set()).add(day)
    paused = read_paused(session, wanted)
    conf = {"ignore_window": True} if ignore_window else {}
    plans = []
    for dag_id, days in sorted(wanted.items()):
        first, last = min(days), max(days)
        plans.append(
            {
                "dag_id": dag_id,
                "from_date": f"{first.isoformat()}T00:00:00Z",
                "to_date": f"{last.isoformat()}T00:00:00Z",
                "reprocess_behavior": reprocess_behavior,
                "dag_run_conf": conf,
                "dates": [d.isoformat() for d in sorted(days)],
                "paused": bool(paused.get(dag_id, False)),
            }
        )
    return plans
