"""Trading dates and window times per region; the only place that turns Airflow dates into them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from offpeak.config import Region


def window_belongs_to_previous_day(region: Region) -> bool:
    """A window opening before noon is the after-hours of the previous local day's session."""
    return region.off_peak.start.hour < 12


def window_cron(region: Region) -> str:
    """Cron (in the region's zone) firing when the window opens after each Mon–Fri session."""
    days = "2-6" if window_belongs_to_previous_day(region) else "1-5"
    start = region.off_peak.start
    return f"{start.minute} {start.hour} * * {days}"


def trading_date_of_window_open(region: Region, moment: datetime) -> date:
    """The trading date whose off-peak window opens at ``moment`` (any aware datetime)."""
    local = moment.astimezone(ZoneInfo(region.timezone))
    if window_belongs_to_previous_day(region):
        return local.date() - timedelta(days=1)
    return local.date()


def latest_completed_trading_date(region: Region, now: datetime) -> date:
    """The most recent weekday whose window has opened by ``now``."""
    tz = ZoneInfo(region.timezone)
    day = trading_date_of_window_open(region, now)
    local_now = now.astimezone(tz)
    opens = datetime.combine(day, region.off_peak.start, tz)
    if window_belongs_to_previous_day(region):
        opens += timedelta(days=1)
    if local_now < opens:
        day -= timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def trading_date_from_context(region: Region, context: Any) -> date:
    """The run's trading date: ``conf.trading_date`` if given, else from the data interval,
    else (a REST run with ``logical_date: null``) the latest completed trading date."""
    dag_run = context.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    if conf.get("trading_date"):
        try:
            return date.fromisoformat(str(conf["trading_date"]))
        except ValueError:
            raise ValueError(
                f"dag_run.conf.trading_date must be YYYY-MM-DD, got {conf['trading_date']!r}"
            ) from None
    start = context.get("data_interval_start") or context.get("logical_date")
    if start is not None:
        return trading_date_of_window_open(region, start)
    now = datetime.now(tz=ZoneInfo("UTC"))
    return latest_completed_trading_date(region, now)
