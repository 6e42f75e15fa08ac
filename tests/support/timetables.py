"""Walking a timetable as the scheduler and a backfill do, for the timetable tests."""

from __future__ import annotations

from datetime import UTC, date, datetime

from airflow.timetables.base import TimeRestriction


def planned_runs(tt, first: date | datetime, last: date | datetime, limit: int = 400) -> list:
    """Every run ``tt`` plans between two bounds, inclusive. A plain date is midnight UTC,
    as Airflow reads a backfill's ``--from-date``/``--to-date``."""

    def bound(value: date | datetime) -> datetime:
        if isinstance(value, datetime):
            return value
        return datetime.combine(value, datetime.min.time(), UTC)

    restriction = TimeRestriction(bound(first), bound(last), catchup=True)
    infos, info = [], None
    while info := tt.next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction):
        infos.append(info)
        assert len(infos) < limit, "runaway timetable"
    return infos
