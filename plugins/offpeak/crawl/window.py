"""How long a crawl may run before its region's off-peak window closes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class WindowBudget:
    """The crawl's time limit when the window's end is its limit: the window closes at
    ``closes`` (named in ``timezone`` to users), ``seconds`` after the crawl starts."""

    closes: datetime
    timezone: str
    seconds: float


def window_budget(
    closespider_timeout: float, closes: datetime | None, timezone: str, now: datetime
) -> WindowBudget | None:
    """The window's limit on a crawl starting ``now``, or None when the window does not limit it:
    no window (the guard is off), or the site's own ``closespider_timeout`` comes first.

    A ``closespider_timeout`` of 0 means no limit of the site's own, so the window's applies.
    The budget is at least 1 s, rounded to tenths.
    """
    if closes is None:
        return None
    left = (closes - now).total_seconds()
    if closespider_timeout != 0 and left >= closespider_timeout:
        return None
    return WindowBudget(closes=closes, timezone=timezone, seconds=max(1.0, round(left, 1)))
