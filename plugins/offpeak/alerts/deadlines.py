"""The Deadline Alert of the scrape DAGs: a run not finished by the end of its off-peak window.

Reference: ``DAGRUN_QUEUED_AT`` plus the window's length (plus
``alerts.deadline_grace_minutes``). A scheduled run is queued when its window opens, so its
deadline is the window's end; a late, manual or backfill run gets one window's length from
when it was queued. On the two nights a year when a DST change falls inside the window, the
deadline is an hour early or late.

Why not a custom reference computing the exact window end: Airflow 3.3.2 creates DagRun
deadlines only for its built-in references (``SerializedReferenceModels.TYPES.DAGRUN``); a
custom one is serialized but never evaluated. See docs/decisions.md.

``OFFPEAK_DEADLINE_ALERTS=false`` leaves the deadline out. It is on everywhere by default,
``dag.test()`` and ``airflow dags test`` included: Airflow 3.3.2's ``dag.test()`` would crash
at the end of a successful run of a DAG with a deadline (apache/airflow#73428), which
offpeak.compat works around in the process that runs it.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from offpeak import compat, settings
from offpeak.schedule.tradingtime import RegionClock


def window_length(region: Any) -> timedelta:
    """The off-peak window's length on an ordinary (no DST change) day."""
    opens, closes = RegionClock.of(region).window_of_day(date(2027, 1, 6))
    return closes - opens


def deadline_alert(region: Any, alerts: Any):
    """The DeadlineAlert of a scrape DAG of ``region`` (None when turned off)."""
    if not settings.deadline_alerts():
        return None
    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

    from offpeak.alerts.notifier import deadline_missed

    compat.fix_dag_test_deadlines()
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=window_length(region) + timedelta(minutes=alerts.deadline_grace_minutes),
        callback=SyncCallback(
            deadline_missed,
            kwargs={
                "http_conn_id": alerts.http_conn_id,
                "region": region.name,
                "window": str(region.off_peak),
                "timezone": region.timezone,
                "grace": alerts.deadline_grace_minutes,
            },
        ),
        name="window_end",
    )
