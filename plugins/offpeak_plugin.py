"""AirflowPlugin of the off-peak scraping project: registers its timetables, and the Coverage
page (a FastAPI app under ``/coverage`` with an entry in the UI's nav)."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from offpeak import compat
from offpeak.schedule.timetable import GlobalTradingDayTimetable, OffPeakTimetable

# The api-server validates a trigger's conf: a bad param's 400 then says what is wrong in one
# line, without jsonschema's dumps of the schema and the value (offpeak.compat).
compat.short_param_errors()


class _CoverageApp:
    """The Coverage FastAPI app, imported on its first request. Every Airflow process loads
    this plugin (the timetables); importing FastAPI and the api-server's security modules
    costs ~1 s, which only the api-server should pay."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from offpeak.coverage.api import app

            self._app = app
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "offpeak.coverage.api:app"


class OffPeakPlugin(AirflowPlugin):
    name = "offpeak"
    timetables: ClassVar[list] = [OffPeakTimetable, GlobalTradingDayTimetable]
    fastapi_apps: ClassVar[list] = [
        {"app": _CoverageApp(), "url_prefix": "/coverage", "name": "Coverage"}
    ]
    external_views: ClassVar[list] = [
        {
            "name": "Coverage",
            "href": "coverage/",
            "destination": "nav",
            "url_route": "coverage",
            "nav_top_level": True,
        }
    ]
