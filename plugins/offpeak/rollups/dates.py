"""Which trading date a rollup's run is for, and the logical date of the rollup of a date."""

# Apart from the sensor: a scrape DAG's template macro needs these, and its parse must not
# import ExternalTaskSensor's module for them.

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from offpeak import params
from offpeak.config import load_project
from offpeak.naming import GLOBAL
from offpeak.schedule.tradingtime import GlobalClock, RegionClock

if TYPE_CHECKING:
    from offpeak.config import Project


def rollup_clock(project: Project, region: str) -> Any:
    """The trading days a rollup runs on: the region's, or (``GLOBAL``) any region's."""
    if region == GLOBAL:
        return GlobalClock.of(project.rolled_up_regions(), project.rollups.global_delay_minutes)
    return RegionClock.of(project.regions[region])


def rollup_logical_date(own_region: str, target: str, dag_run: Any) -> str:
    """Template macro for ExternalTaskMarker: the logical date of the ``target`` rollup (a
    region or ``GLOBAL``) for the trading date of this run of an ``own_region`` DAG. Works
    for runs without a logical date too (their trading date comes from conf or the clock)."""
    project = load_project()
    day = params.trading_date(rollup_clock(project, own_region), dag_run)
    return rollup_clock(project, target).midnight(day).isoformat()
