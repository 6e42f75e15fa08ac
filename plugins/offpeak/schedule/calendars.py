"""Exchange trading calendars (sessions, weekends, holidays) from the `holidays` package."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

# ISO 10383 MICs that `holidays` knows under another code of the same exchange.
ALIASES = {"XTKS": "XJPX"}  # Tokyo Stock Exchange: the JPX group's calendar


class UnknownExchange(ValueError):
    """The MIC has no trading calendar here."""


# The codes of holidays.list_supported_financial() (aliases included) in the pinned `holidays`
# (0.109), written out: the config check runs on every DAG parse and every task start, and
# importing `holidays` for them costs ~12 ms of the 100 ms a task start may spend parsing
# (docs/scaling.md). tests/unit/test_parse_path.py holds this list equal to the package's, so an
# upgrade that adds or drops a market fails there, naming the codes.
HOLIDAYS_FINANCIAL = frozenset({
    "ASX", "B3", "BIST", "BME", "BMV", "BSE", "BVC", "BVMF", "BYMA", "CME", "ECB", "ENX", "FED",
    "GPW", "HKEX", "IFEU", "JPX", "JSE", "KRX", "LSE", "NSE", "NYSE", "NZX", "OSE", "PSX", "SEHK",
    "SGX", "SIX", "SSE", "SZSE", "TAR", "TSE", "TSX", "TWSE", "USGS", "USNY", "XAMS", "XASX",
    "XATH", "XBOG", "XBOM", "XBRU", "XBUE", "XCME", "XDUB", "XECB", "XETR", "XFED", "XFRA", "XHKG",
    "XIST", "XJPX", "XJSE", "XKAR", "XKRX", "XLIS", "XLON", "XMAD", "XMEX", "XMIL", "XNAS", "XNSE",
    "XNYS", "XNZE", "XOSL", "XPAR", "XSAU", "XSES", "XSHE", "XSHG", "XSIF", "XSWX", "XTAI", "XTSE",
    "XWAR",
})  # fmt: skip


SUPPORTED = HOLIDAYS_FINANCIAL | {
    alias for alias, code in ALIASES.items() if code in HOLIDAYS_FINANCIAL
}


def supported_exchanges() -> frozenset[str]:
    """Every exchange code with a calendar: `holidays`' financial markets plus our aliases."""
    return SUPPORTED


def check_exchange(exchange: str) -> str:
    """``exchange`` if it has a calendar, else UnknownExchange listing the MICs that do."""
    if exchange not in supported_exchanges():
        known = ", ".join(sorted(c for c in supported_exchanges() if len(c) == 4))
        raise UnknownExchange(f"no trading calendar for exchange {exchange!r}; known MICs: {known}")
    return exchange


class TradingCalendar:
    """The sessions of one exchange: weekdays it trades that are not exchange holidays."""

    def __init__(self, exchange: str) -> None:
        import holidays

        self.exchange = check_exchange(exchange)
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


@lru_cache(maxsize=64)
def get_calendar(exchange: str) -> TradingCalendar:
    return TradingCalendar(exchange)
