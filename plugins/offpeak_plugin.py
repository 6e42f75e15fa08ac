"""AirflowPlugin of the off-peak scraping project: registers its timetables."""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

from offpeak.schedule.timetable import GlobalTradingDayTimetable, OffPeakTimetable


class OffPeakPlugin(AirflowPlugin):
    name = "offpeak"
    timetables: ClassVar[list] = [OffPeakTimetable, GlobalTradingDayTimetable]
