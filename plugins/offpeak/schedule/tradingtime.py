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

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from offpeak.errors import Final
from offpeak.schedule.calendars import TradingCalendar, get_calendar


class Window(Protocol):
    """A local wall-clock window (regions.yaml's ``off_peak``)."""

    @property
    def start(self) -> time: ...
    @property
    def end(self) -> time: ...


class RegionLike(Protocol):
    """What a clock reads of a region: offpeak.config.Region has it. A protocol, not that class,
    so the schedule does not depend on the config that validates exchanges with it."""

    @property
    def name(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def exchange(self) -> str: ...
    @property
    def off_peak(self) -> Window: ...
    @property
    def closures(self) -> Mapping[date, str]: ...
    @property
    def extra_sessions(self) -> Mapping[date, str]: ...


MIDNIGHT = time(0, 0)
# A calendar with no trading day in this many days is broken, not quiet.
MAX_GAP_DAYS = 30
# A region's calendar overrides (regions.yaml `closures`, `extra_sessions`): (day, reason) pairs.
DatedReasons = tuple[tuple[date, str], ...]

log = logging.getLogger(__name__)
# Redundant overrides already logged by this process: (region, field, day).
_warned: set[tuple[str, str, date]] = set()


def window_text(start: time, end: time) -> str:
    """``18:30–07:30``: a window as regions.yaml writes it (seconds only when set)."""
    fmt = "%H:%M:%S" if start.second or end.second else "%H:%M"
    return f"{start.strftime(fmt)}–{end.strftime(fmt)}"


class NotATradingDay(Final, ValueError):
    """A trading date was asked for on a day the region's exchange does not trade."""


class TradingDays:
    """Trading days as instants, from four primitives a subclass defines: ``tz``,
    ``is_day(day)``, ``midnight(day)`` and ``run_after(day)`` (when the day's run is due).
    The timetables schedule against this interface."""

    tz: Any

    def is_day(self, day: date) -> bool:
        raise NotImplementedError

    def midnight(self, day: date) -> datetime:
        raise NotImplementedError

    def run_after(self, day: date) -> datetime:
        raise NotImplementedError

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def next_day(self, day: date) -> date:
        """The first trading day on or after ``day``."""
        for offset in range(MAX_GAP_DAYS):
            if self.is_day(candidate := day + timedelta(days=offset)):
                return candidate
        raise ValueError(f"{self}: no trading day within {MAX_GAP_DAYS} days of {day}")

    def previous_day(self, day: date) -> date:
        """The last trading day on or before ``day``."""
        for offset in range(MAX_GAP_DAYS):
            if self.is_day(candidate := day - timedelta(days=offset)):
                return candidate
        raise ValueError(f"{self}: no trading day within {MAX_GAP_DAYS} days of {day}")

    def data_interval(self, day: date) -> tuple[datetime, datetime]:
        """The trading day as an interval: midnight to the next midnight in ``tz``."""
        return self.midnight(day), self.midnight(day + timedelta(days=1))

    def day_of_interval_start(self, start: datetime) -> date:
        """The trading date of a data interval: the local date of its start."""
        return self.local_date(start)

    def latest_due_day(self, now: datetime) -> date:
        """The latest trading day whose run was due by ``now``."""
        day = self.previous_day(self.local_date(now))
        while self.run_after(day) > now:
            day = self.previous_day(day - timedelta(days=1))
        return day

    def days_back(self, day: date, count: int) -> date:
        """The trading day ``count`` trading days before ``day`` (0 gives ``day``)."""
        for _ in range(count):
            day = self.previous_day(day - timedelta(days=1))
        return day

    def trading_day_of(self, logical_date: datetime) -> date:
        """The trading day a manual run's logical date stands for.

        * exactly midnight in ``tz`` or in UTC (a plain date given to the UI, the CLI or the
          API): that calendar date, or the trading day before it if it is none;
        * any other instant (e.g. "now", the UI's default): the latest trading day whose run
          was due by then.
        """
        for zone in (self.tz, UTC):
            local = logical_date.astimezone(zone)
            if local.time() == MIDNIGHT:
                return self.previous_day(local.date())
        return self.latest_due_day(logical_date)

    def check_day(self, day: date) -> date:
        if not self.is_day(day):
            raise NotATradingDay(
                f"{day} is not a trading day of {self}; the one before it is "
                f"{self.previous_day(day)}"
            )
        return day


@dataclass(frozen=True)
class RegionClock(TradingDays):
    """A region's zone, exchange calendar and daily off-peak window, as instants.

    A window opening before noon is the after-hours of the previous local day's session
    (a 02:00 window on Saturday belongs to Friday); one opening at or after noon belongs to
    that day's session. A window whose end is not after its start crosses midnight.

    ``closures`` and ``extra_sessions`` (regions.yaml) override the exchange calendar: a
    listed closure has no session, a listed extra session has one.
    """

    name: str
    timezone: str
    exchange: str
    window_start: time
    window_end: time
    closures: DatedReasons = ()
    extra_sessions: DatedReasons = ()

    @classmethod
    def of(cls, region: RegionLike) -> RegionClock:
        return cls(
            name=region.name,
            timezone=region.timezone,
            exchange=region.exchange,
            window_start=region.off_peak.start,
            window_end=region.off_peak.end,
            closures=tuple(region.closures.items()),
            extra_sessions=tuple(region.extra_sessions.items()),
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

    def midnight(self, day: date) -> datetime:
        return self.local(day, MIDNIGHT)

    def window_text(self) -> str:
        return window_text(self.window_start, self.window_end)

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

    def last_window_open(self, now: datetime) -> datetime:
        """The latest window opening at or before ``now`` (the window ``now`` is in, or the
        last one before it): what a resumable crawl's state is dated by (offpeak.crawl.resume)."""
        day = self.local_date(now) + timedelta(days=1)
        while (opens := self.window_of_day(day)[0]) > now:
            day -= timedelta(days=1)
        return opens

    # ------------------------------------------------------------------ trading days

    @cached_property
    def _overrides(self) -> tuple[dict[date, str], dict[date, str]]:
        """(closures, extra sessions) as dicts. The first use logs the redundant entries: not
        a config error, since a `holidays` release that learns a closure must not make
        regions.yaml invalid (that would stop every DAG); once per process and entry."""
        if self.closures or self.extra_sessions:
            for field, day, why in self.redundant_overrides():
                if (self.name, field, day) not in _warned:
                    _warned.add((self.name, field, day))
                    log.warning(
                        "regions.yaml: region %s lists %s in %s, but the %s calendar %s; "
                        "the entry can go",
                        self.name, day, field, self.exchange, why,
                    )  # fmt: skip
        return dict(self.closures), dict(self.extra_sessions)

    def redundant_overrides(self) -> list[tuple[str, date, str]]:
        """The listed closures and extra sessions the exchange calendar already agrees with,
        as (field, day, what the calendar says)."""
        calendar = self.calendar
        return [
            ("closures", day, f"already closes it ({calendar.holiday_name(day)})")
            for day, _ in self.closures
            if not calendar.is_session(day)
        ] + [
            ("extra_sessions", day, "already has a session that day")
            for day, _ in self.extra_sessions
            if calendar.is_session(day)
        ]

    def is_day(self, day: date) -> bool:
        closures, extra = self._overrides
        if day in extra:
            return True
        return day not in closures and self.calendar.is_session(day)

    def why_closed(self, day: date) -> str | None:
        """Why ``day`` has no session (a listed closure, ``"weekend"``, a holiday's name), or
        None if it has one."""
        closures, extra = self._overrides
        if day in extra:
            return None
        if day in closures:
            return f"closure listed in regions.yaml: {closures[day]}"
        return self.calendar.holiday_name(day)

    def run_after(self, day: date) -> datetime:
        return self.window_open(day)

    def check_day(self, day: date) -> date:
        if not self.is_day(day):
            why = self.why_closed(day)
            raise NotATradingDay(
                f"{day} is not a trading day of {self.exchange} (region {self.name}): {why}; "
                f"the session before it is {self.previous_day(day)}"
            )
        return day


@dataclass(frozen=True)
class GlobalClock(TradingDays):
    """Calendar dates on which at least one region trades, in UTC: the days of rollup__global.

    A date's run is due ``delay`` after the last window of that date's sessions closes.
    """

    regions: tuple[RegionClock, ...]
    delay: timedelta = timedelta(minutes=30)
    tz: Any = UTC

    def is_day(self, day: date) -> bool:
        return any(r.is_day(day) for r in self.regions)

    def trading_regions(self, day: date) -> list[RegionClock]:
        return [r for r in self.regions if r.is_day(day)]

    def midnight(self, day: date) -> datetime:
        return datetime.combine(day, MIDNIGHT, UTC)

    def run_after(self, day: date) -> datetime:
        return max(r.session_window(day)[1] for r in self.trading_regions(day)) + self.delay

    def __str__(self) -> str:
        return f"any region ({', '.join(r.name for r in self.regions)})"

    @classmethod
    def of(cls, regions: Any, delay_minutes: int = 30) -> GlobalClock:
        return cls(tuple(RegionClock.of(r) for r in regions), timedelta(minutes=delay_minutes))
