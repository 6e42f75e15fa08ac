"""Typed run parameters (Airflow Params with JSON schema): the UI's trigger form, and what a
REST trigger's ``conf`` is validated against (a wrong type or value is a 400 naming the field).
"""

from __future__ import annotations

from typing import Any

TRADING_DATE = (
    "Scrape this trading date (YYYY-MM-DD, the region's local date; it must be a trading day "
    "of the region's exchange). Empty: the run's own trading date, or for a run without a "
    "logical date the latest trading day whose window has opened."
)


def _trading_date():
    from airflow.sdk import Param

    return Param(
        None, type=["null", "string"], format="date", title="Trading date",
        description=TRADING_DATE,
    )  # fmt: skip


def scrape_params(site: Any) -> dict[str, Any]:
    """The Params of scrape__<site>__<region>."""
    from airflow.sdk import Param

    return {
        "trading_date": _trading_date(),
        "ignore_window": Param(
            False,
            type="boolean",
            title="Ignore the off-peak window",
            description="Crawl now, even outside the region's off-peak window (by default a "
            "run outside it waits, without holding a worker slot, until the window opens).",
        ),
        "max_pages": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Max pages",
            description="Stop the crawl after this many pages (a sample). The load then only "
            "adds and updates rows: it deletes nothing, and the audit says complete=false.",
        ),
        "start_urls": Param(
            [],
            type="array",
            uniqueItems=True,
            title="Start URLs",
            items={"type": "string", "enum": list(site.start_urls)},
            description="Crawl only these of the site's start URLs (empty: all). A subset is "
            "a partial crawl, loaded like max_pages.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Crawl and transform (files and rejects are written), but skip the "
            "load: the warehouse is not touched.",
        ),
        "ignore_breaker": Param(
            False,
            type="boolean",
            title="Ignore the circuit breaker",
            description="Close the site's circuit breaker and crawl, even while it is open "
            "(after repeated failed crawls its runs are skipped for a cooldown). A failed crawl "
            "then counts again from one.",
        ),
    }


def rollup_params() -> dict[str, Any]:
    """The Params of the rollups: only which trading date."""
    return {"trading_date": _trading_date()}


def run_param(context: Any, key: str, default: Any = None) -> Any:
    """A run's parameter: the validated Params (conf merged in), else the raw conf."""
    from offpeak.schedule.tradingtime import run_conf

    params = context.get("params") or {}
    if key in params and params[key] is not None:
        return params[key]
    return run_conf(context).get(key, default)
