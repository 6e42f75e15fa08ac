"""AirflowPlugin of the off-peak scraping project (the off-peak timetable registers here)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class OffPeakPlugin(AirflowPlugin):
    name = "offpeak"
