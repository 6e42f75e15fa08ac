"""Trading dates and off-peak windows per region: the only place that turns instants into them.

Everything here is plain ``datetime``/``zoneinfo``; the timetable and the operators build on it.

DST policy (every local wall-clock time of a region goes through :meth:`RegionClock.local`):

* a local time that does not exist (the hour skipped when clocks go forward) is moved
  forward by the length of the gap: 02:30 on a 02:00→03:00 day is 03:30;
* a local time that happens twice (the hour repeated when clocks go back) is its first
  occurrence, the earlier instant.

Both follow PEP 495 with ``fold=0``, which is also what pendulum and Airflow do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from offpeak.calendars import TradingCalendar, get_calendar

if TYPE_CHECKING:
    from offpeak.config import Region

MIDNIGHT = time(0, 0)


class NotATradingDay(ValueError):
    """A trading date was asked for on a day the region's exchange does not trade."""


@dataclass(frozen=True)
class RegionClock:
    """A region's zone, exchange calendar and daily off-peak window, as instants.

    A window opening before noon is the after-hours of the previous local day's session
    (a 02:00 window on Saturday belongs to Friday); one opening at or after noon belongs to
    that day's session. A window whose end is not after its start crosses midnight.
    """

    name: str
    timezone: str
    exchange: str
    window_start: time
    window_end: time

    @classmethod
    def of(cls, region: Region) -> RegionClock:
        return cls(
            name=region.name,
            timezone=region.timezone,
            exchange=region.exchange,
            window_start=region.off_peak.start,
            window_end=region.off_peak.end,
        )

    # ------------------------------------------------------------------ basics

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def calendar(self) -> TradingCalendar:
        return get_calendar(self.exchange)

    @property
    def opens_next_day(self) -> bool:
        return self.window_start.hour < 12

    @property
    def crosses_midnight(self) -> bool:
        return self.window_end <= self.window_start

    def local(self, day: date, at: time) -> datetime:
        """The instant (UTC) of wall-clock ``at`` on ``day`` in the region, per the DST policy."""
        return datetime.combine(day, at, self.tz).astimezone(UTC)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def midnight(self, day: date) -> datetime:
        return self.local(day, MIDNIGHT)

    def window_text(self) -> str:
        fmt = "%H:%M:%S" if self.window_start.second or self.window_end.second else "%H:%M"
        return f"{self.window_start.strftime(fmt)}–{self.window_end.strftime(fmt)}"

    # ------------------------------------------------------------------ windows

    def window_of_day(self, day: date) -> tuple[datetime, datetime]:
        """The window that opens on local calendar day ``day``: (open, close)."""
        close_day = day + timedelta(days=1) if self.crosses_midnight else day
        return self.local(day, self.window_start), self.local(close_day, self.window_end)

    def session_window(self, session: date) -> tuple[datetime, datetime]:
        """The window in which ``session``'s data is crawled: (open, close)."""
        return self.window_of_day(session + timedelta(days=1) if self.opens_next_day else session)

    def window_open(self, session: date) -> datetime:
        return self.session_window(session)[0]

    def current_window(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The window that contains ``now`` (windows open every calendar day), or None."""
        today = self.local_date(now)
        for day in (today - timedelta(days=1), today):
            opens, closes = self.window_of_day(day)
            if opens <= now < closes:
                return opens, closes
        return None

    def next_window_open(self, now: datetime) -> datetime:
        """The first window opening strictly after ``now``."""
        day = self.local_date(now) - timedelta(days=1)
        while (opens := self.window_of_day(day)[0]) <= now:
            day += timedelta(days=1)
        return opens

    # ------------------------------------------------------------------ trading days

    def data_interval(self, session: date) -> tuple[datetime, datetime]:
        """The trading day as an interval: local midnight to the next local midnight."""
        return self.midnight(session), self.midnight(session + timedelta(days=1))

    def session_of_interval_start(self, start: datetime) -> date:
        """The trading date of a data interval: the local date of its start."""
        return self.local_date(start)

    def latest_opened_session(self, now: datetime) -> date:
        """The latest session whose off-peak window has opened by ``now``: the most recent
        complete trading day, whose data can be crawled now or at the next window."""
        session = self.calendar.previous_session(self.local_date(now))
        while self.window_open(session) > now:
            session = self.calendar.previous_session(session - timedelta(days=1))
        return session

    def sessions_back(self, session: date, count: int) -> date:
        """The session ``count`` sessions before ``session`` (0 gives ``session`` itself)."""
        for _ in range(count):
            session = self.calendar.previous_session(session - timedelta(days=1))
        return session

    def trading_day_of(self, logical_date: datetime) -> date:
        """The trading day a manual run's logical date stands for.

        * exactly midnight in the region's zone or in UTC (a plain date given to the UI, the
          CLI or the API): that calendar date, or the session before it if it has none;
        * any other instant (e.g. "now", the UI's default): the latest session whose window
          has opened by then.
        """
        local = logical_date.astimezone(self.tz)
        in_utc = logical_date.astimezone(UTC)
        if local.time() == MIDNIGHT:
            return self.calendar.previous_session(local.date())
        if in_utc.time() == MIDNIGHT:
            return self.calendar.previous_session(in_utc.date())
        return self.latest_opened_session(logical_date)

    def check_session(self, day: date) -> date:
        if not self.calendar.is_session(day):
            why = self.calendar.holiday_name(day)
            before = self.calendar.previous_session(day)
            raise NotATradingDay(
                f"{day} is not a trading day of {self.exchange} (region {self.name}): {why}; "
                f"the session before it is {before}"
            )
        return day


def _bool_conf(conf: dict, key: str) -> bool:
    value = conf.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"dag_run.conf.{key} must be true or false, got {value!r}")
    return value


def run_conf(context: Any) -> dict:
    dag_run = context.get("dag_run")
    return (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}


def ignore_window(context: Any) -> bool:
    """``dag_run.conf.ignore_window``: crawl now even outside the region's window."""
    return _bool_conf(run_conf(context), "ignore_window")


def trading_date_from_context(region: Region, context: Any, now: datetime | None = None) -> date:
    """The run's trading date.

    1. ``dag_run.conf.trading_date`` (YYYY-MM-DD, must be a session of the region's exchange);
    2. else the local date of ``data_interval_start`` (the timetable makes that the trading day);
    3. else, for a run without a logical date (REST ``"logical_date": null``), the latest
       session whose window has opened.
    """
    clock = RegionClock.of(region)
    conf = run_conf(context)
    if conf.get("trading_date"):
        try:
            day = date.fromisoformat(str(conf["trading_date"]))
        except ValueError:
            raise ValueError(
                f"dag_run.conf.trading_date must be YYYY-MM-DD, got {conf['trading_date']!r}"
            ) from None
        return clock.check_session(day)
    start = context.get("data_interval_start")
    if start is not None:
        return clock.session_of_interval_start(start)
    return clock.latest_opened_session(now or datetime.now(tz=UTC))
