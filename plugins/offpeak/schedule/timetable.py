"""Timetables of trading days: per region (OffPeakTimetable) and across regions (rollup__global)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

from offpeak.schedule.calendars import check_exchange
from offpeak.schedule.tradingtime import MIDNIGHT, GlobalClock, RegionClock, RegionLike, TradingDays

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction
    from pendulum import DateTime


def _pendulum(moment: datetime) -> DateTime:
    import pendulum

    return pendulum.instance(moment.astimezone(UTC))


def _plain_date(bound: datetime) -> date | None:
    """The date a range bound at exactly midnight UTC stands for (how Airflow reads a plain
    `--from-date 2027-03-01`), else None: the bound is an instant."""
    in_utc = bound.astimezone(UTC)
    return in_utc.date() if in_utc.time() == MIDNIGHT else None


def _utcnow() -> datetime:
    return datetime.now(tz=UTC)


DatedInput = Mapping[str | date, str] | Iterable[tuple[str | date, str]]


def _iso_keyed(dated: DatedInput | None) -> dict[str, str]:
    """``{day: reason}`` with ISO date keys, sorted: JSON for serialize(), stable for __eq__."""
    pairs = dict(dated or {}).items()
    return dict(sorted((d if isinstance(d, str) else d.isoformat(), why) for d, why in pairs))


def _counted(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


class _TradingDayTimetable(Timetable):
    """One run per trading day of ``self.clock`` (a TradingDays), with the range, catchup and
    manual-run rules shared by both timetables."""

    catchup_days: int | None = None

    @property
    def clock(self) -> TradingDays:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash(repr(self.serialize()))

    # ------------------------------------------------------------------ scheduling

    def run_info(self, session: date) -> DagRunInfo:
        start, end = self.clock.data_interval(session)
        return DagRunInfo(
            run_after=_pendulum(self.clock.run_after(session)),
            data_interval=DataInterval(_pendulum(start), _pendulum(end)),
        )

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        start, end = self.clock.data_interval(self.clock.trading_day_of(run_after))
        return DataInterval(_pendulum(start), _pendulum(end))

    def generate_run_id(
        self,
        *,
        run_type: Any,
        run_after: DateTime,
        data_interval: DataInterval | None,
        **extra: Any,
    ) -> str:
        """``<run type>__<trading date>__<run_after>``: the run id names the trading date the
        run is for, where the UI's run list and the REST API show it. India's 9 November is
        ``scheduled__2026-11-09__2026-11-09T11:00:00+00:00`` (its window opens at 16:30 IST),
        where its logical date, 2026-11-08T18:30 UTC (local midnight), reads as the 8th.
        Airflow calls this for scheduled runs and for REST or UI triggers without a run id of
        their own; Airflow 3.3 names a backfill's runs itself (models/backfill.py,
        DagRun.generate_run_id), so those keep ``backfill__<run_after>``. ``run_after`` keeps
        the id unique, as in Airflow's own."""
        if data_interval is None:  # a run with no logical date: Airflow's id
            return super().generate_run_id(
                run_type=run_type, run_after=run_after, data_interval=data_interval, **extra
            )
        day = self.clock.day_of_interval_start(data_interval.start)
        return run_type.generate_run_id(suffix=f"{day.isoformat()}__{run_after.isoformat()}")

    def _first_session_from(self, bound: datetime) -> date:
        """The first session whose run a lower bound admits."""
        day = _plain_date(bound)
        if day is None:
            day = self.clock.local_date(bound)
            if self.clock.midnight(day) < bound:
                day += timedelta(days=1)
        return self.clock.next_day(day)

    def _admitted_by_latest(self, session: date, bound: datetime) -> bool:
        day = _plain_date(bound)
        return session <= day if day is not None else self.clock.midnight(session) <= bound

    def next_session(
        self,
        last_session: date | None,
        restriction: TimeRestriction,
        now: datetime,
    ) -> date | None:
        """The trading date of the next run (see :meth:`next_dagrun_info`), given ``now``."""
        clock = self.clock
        candidates = []
        if last_session is not None:
            candidates.append(clock.next_day(last_session + timedelta(days=1)))
        if restriction.earliest is not None:
            candidates.append(self._first_session_from(restriction.earliest))
        if not restriction.catchup:
            # Like Airflow's cron timetables: no catching up, but the latest due run is made.
            candidates.append(clock.latest_due_day(now))
        elif self.catchup_days is not None and restriction.latest is None:
            # The scheduler's own planning (a backfill always has an upper bound).
            latest = clock.latest_due_day(now)
            candidates.append(clock.days_back(latest, max(self.catchup_days - 1, 0)))
        if not candidates:
            candidates.append(clock.latest_due_day(now))
        session = max(candidates)
        if restriction.latest is not None and not self._admitted_by_latest(
            session, restriction.latest
        ):
            return None
        return session

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        last = (
            self.clock.day_of_interval_start(last_automated_data_interval.start)
            if last_automated_data_interval is not None
            else None
        )
        session = self.next_session(last, restriction, _utcnow())
        return None if session is None else self.run_info(session)


class OffPeakTimetable(_TradingDayTimetable):
    """
    One run per trading day of the region's exchange calendar.

    * data interval: the trading day in the region's zone, local midnight to local midnight,
      so ``data_interval_start.in_timezone(zone).date()`` is the trading date (and the
      logical date of every DAG of a region is the same local midnight);
    * the run is due (``run_after``) when the region's off-peak window opens after that
      session;
    * weekends and exchange holidays get no run; the region's ``closures`` and
      ``extra_sessions`` (regions.yaml) override the exchange calendar.

    Range bounds (``start_date``, backfill ``--from-date``/``--to-date``) select runs by their
    logical date; a bound at exactly midnight UTC, which is how Airflow reads a plain date,
    selects by trading date instead, so ``--from-date 2027-03-01`` means the session of
    2027-03-01 in every zone.

    :param region: region name (for messages)
    :param timezone: the region's IANA zone
    :param exchange: ISO 10383 MIC of the exchange calendar
    :param window_start: local time the off-peak window opens
    :param window_end: local time it closes (not after ``window_start``: the next day)
    :param catchup_days: with ``catchup=True``, the scheduler catches up at most this many
        sessions (None: back to ``start_date``); backfills are never limited by it
    :param closures: days without a session although the calendar has one: {day: reason}
    :param extra_sessions: days with a session although the calendar has none: {day: reason}
    """

    def __init__(
        self,
        *,
        region: str,
        timezone: str,
        exchange: str,
        window_start: time,
        window_end: time,
        catchup_days: int | None = None,
        closures: DatedInput | None = None,
        extra_sessions: DatedInput | None = None,
    ) -> None:
        self.region = region
        self.timezone = timezone
        self.exchange = exchange
        self.window_start = window_start
        self.window_end = window_end
        self.catchup_days = catchup_days
        self.closures = _iso_keyed(closures)
        self.extra_sessions = _iso_keyed(extra_sessions)

    @classmethod
    def for_region(cls, region: RegionLike, catchup_days: int | None = None) -> OffPeakTimetable:
        clock = RegionClock.of(region)
        return cls(
            region=clock.name,
            timezone=clock.timezone,
            exchange=clock.exchange,
            window_start=clock.window_start,
            window_end=clock.window_end,
            catchup_days=catchup_days,
            closures=clock.closures,
            extra_sessions=clock.extra_sessions,
        )

    @cached_property
    def clock(self) -> RegionClock:
        def dated(reasons: dict[str, str]) -> tuple[tuple[date, str], ...]:
            return tuple((date.fromisoformat(day), why) for day, why in reasons.items())

        return RegionClock(
            self.region, self.timezone, self.exchange, self.window_start, self.window_end,
            closures=dated(self.closures), extra_sessions=dated(self.extra_sessions),
        )  # fmt: skip

    # ------------------------------------------------------------------ UI

    @property
    def summary(self) -> str:
        return f"{self.exchange} trading days, off-peak {self.clock.window_text()} {self.timezone}"

    @property
    def description(self) -> str:  # type: ignore[override]
        when = "the next morning" if self.clock.opens_next_day else "the same day"
        listed = ""
        if self.closures or self.extra_sessions:
            # Counts, not dates: the list grows each year, and Airflow stores this in a
            # 1000-character column. The DAG's docs list them.
            counts = [
                _counted(len(days), what)
                for days, what in ((self.closures, "closure"), (self.extra_sessions, "session"))
                if days
            ]
            listed = f"; regions.yaml adds {' and '.join(counts)}"
        return (
            f"One run per {self.exchange} trading day (no run on weekends or exchange "
            f"holidays{listed}), due when the off-peak window opens at "
            f"{self.window_start:%H:%M} {self.timezone} ({when}); data interval: the trading "
            f"day, local midnight to midnight"
        )

    # ------------------------------------------------------------------ serialization

    def serialize(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "timezone": self.timezone,
            "exchange": self.exchange,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "catchup_days": self.catchup_days,
            # Only when set: a region without overrides keeps the serialized form (and so the
            # DAG version) it had before they existed.
            **({"closures": self.closures} if self.closures else {}),
            **({"extra_sessions": self.extra_sessions} if self.extra_sessions else {}),
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> OffPeakTimetable:
        return cls(
            region=data["region"],
            timezone=data["timezone"],
            exchange=data["exchange"],
            window_start=time.fromisoformat(data["window_start"]),
            window_end=time.fromisoformat(data["window_end"]),
            catchup_days=data.get("catchup_days"),
            closures=data.get("closures"),
            extra_sessions=data.get("extra_sessions"),
        )

    def validate(self) -> None:
        from airflow.exceptions import AirflowTimetableInvalid

        # Every DAG parse calls this: check the exchange's code, without building its calendar
        # (holidays' financial package imports every country's module, ~0.3 s).
        try:
            _ = self.clock.tz, check_exchange(self.exchange)
        except Exception as exc:
            raise AirflowTimetableInvalid(f"region {self.region!r}: {exc}") from exc


class GlobalTradingDayTimetable(_TradingDayTimetable):
    """
    One run per calendar date on which at least one region trades (rollup__global).

    * data interval: the date in UTC, midnight to midnight; the logical date is that UTC
      midnight;
    * due ``delay_minutes`` after the last off-peak window of that date's sessions closes,
      so every region's data for the date is in.

    :param regions: the regions, as :meth:`OffPeakTimetable.serialize` gives them
    :param delay_minutes: how long after the last window closes the run is due
    """

    def __init__(self, *, regions: list[dict[str, Any]], delay_minutes: int = 30) -> None:
        self.regions = regions
        self.delay_minutes = delay_minutes

    @classmethod
    def for_regions(cls, regions: list[RegionLike], delay_minutes: int = 30):
        return cls(
            regions=[OffPeakTimetable.for_region(r).serialize() for r in regions],
            delay_minutes=delay_minutes,
        )

    @cached_property
    def clock(self) -> GlobalClock:
        clocks = tuple(OffPeakTimetable.deserialize(r).clock for r in self.regions)
        return GlobalClock(clocks, timedelta(minutes=self.delay_minutes))

    @property
    def summary(self) -> str:
        exchanges = ", ".join(sorted({r["exchange"] for r in self.regions}))
        return f"Trading days of {exchanges}, after the last window closes (UTC)"

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            "One run per calendar date on which any region trades, due "
            f"{self.delay_minutes} min after the last region's off-peak window for that date "
            "closes; data interval: the date in UTC"
        )

    def serialize(self) -> dict[str, Any]:
        return {"regions": self.regions, "delay_minutes": self.delay_minutes}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> GlobalTradingDayTimetable:
        return cls(regions=data["regions"], delay_minutes=data["delay_minutes"])
