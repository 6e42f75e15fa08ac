"""Exchange trading calendars (sessions, weekends, holidays) from the `holidays` package."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache
from typing import Any

# ISO 10383 MICs that `holidays` knows under another code of the same exchange.
ALIASES = {"XTKS": "XJPX"}  # Tokyo Stock Exchange: the JPX group's calendar
# A trading calendar with no session in this many days is broken, not quiet.
MAX_GAP_DAYS = 30


class UnknownExchange(ValueError):
    """The MIC has no trading calendar here."""


@lru_cache(maxsize=1)
def supported_exchanges() -> frozenset[str]:
    """Every exchange code with a calendar: `holidays`' financial markets plus our aliases."""
    import holidays

    return frozenset(holidays.list_supported_financial()) | frozenset(ALIASES)


class TradingCalendar:
    """The sessions of one exchange: weekdays it trades that are not exchange holidays."""

    def __init__(self, exchange: str) -> None:
        import holidays

        if exchange not in supported_exchanges():
            raise UnknownExchange(
                f"no trading calendar for exchange {exchange!r}; known: "
                f"{', '.join(sorted(c for c in supported_exchanges() if len(c) == 4))}"
            )
        self.exchange = exchange
        # The holiday table fills in year by year on lookup (expand=True).
        self._holidays: Any = holidays.financial_holidays(ALIASES.get(exchange, exchange))
        self.weekend: frozenset[int] = frozenset(self._holidays.weekend)

    def is_session(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self._holidays

    def holiday_name(self, day: date) -> str | None:
        """Why ``day`` has no session (``"weekend"``, a holiday's name) or None if it has one."""
        if day.weekday() in self.weekend:
            return "weekend"
        return self._holidays.get(day)

    def next_session(self, day: date) -> date:
        """The first session on or after ``day``."""
        for offset in range(MAX_GAP_DAYS):
            candidate = day + timedelta(days=offset)
            if self.is_session(candidate):
                return candidate
        raise ValueError(f"{self.exchange}: no session within {MAX_GAP_DAYS} days of {day}")

    def previous_session(self, day: date) -> date:
        """The last session on or before ``day``."""
        for offset in range(MAX_GAP_DAYS):
            candidate = day - timedelta(days=offset)
            if self.is_session(candidate):
                return candidate
        raise ValueError(f"{self.exchange}: no session within {MAX_GAP_DAYS} days of {day}")

    def sessions(self, first: date, last: date) -> list[date]:
        """Sessions from ``first`` to ``last``, both inclusive."""
        days = (last - first).days + 1
        return [
            d for d in (first + timedelta(n) for n in range(max(days, 0))) if self.is_session(d)
        ]


@lru_cache(maxsize=64)
def get_calendar(exchange: str) -> TradingCalendar:
    return TradingCalendar(exchange)
