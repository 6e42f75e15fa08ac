"""Run parameters: the trigger form's Params, and the one reader of a run's conf and dates.

The Params are Airflow Params with a JSON schema: the UI's trigger form, and what a REST
trigger's ``conf`` is validated against (a wrong type or value is a 400 naming the field).
Every task, sensor, macro and alert asks this module for the run's trading date or a flag;
the clock math it builds on is offpeak.schedule.tradingtime's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from offpeak import compat
from offpeak.schedule.tradingtime import RegionClock, TradingDays

if TYPE_CHECKING:
    from offpeak.config import Region

TRADING_DATE = (
    "Scrape this trading date (YYYY-MM-DD, the region's local date; it must be a trading day "
    "of the region's exchange). Empty: the run's own trading date, or for a run without a "
    "logical date the latest trading day whose window has opened."
)


def _trading_date():
    from airflow.sdk import Param

    compat.check_param_schemas_once()  # serialising a DAG resolves each Param ~9 times
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


# ---------------------------------------------------------------------------- reading a run


def _conf_of(dag_run: Any) -> dict:
    """A DAG run's conf: of a DagRun, or of a run as the REST API shows it (a dict)."""
    if dag_run is None:
        return {}
    if isinstance(dag_run, Mapping):
        return dag_run.get("conf") or {}
    return getattr(dag_run, "conf", None) or {}


def run_conf(context: Any) -> dict:
    """``dag_run.conf`` of the task's context (``{}`` when there is none)."""
    return _conf_of(context.get("dag_run"))


def check_conf(context: Any) -> None:
    """ValueError naming every key of the run's conf that no Param of its DAG knows.

    Airflow validates a trigger's conf against the Params it names, but accepts any other key
    (a Param schema cannot forbid extra keys) and the REST API answers 200. A misspelt key
    (``{"max_page": 1}``) would then be ignored, and the run would do what it was not asked
    to. So the first task fails at once naming the keys (a final failure, no retry)."""
    dag = context.get("dag")
    known = set(getattr(dag, "params", None) or {})
    unknown = sorted(set(run_conf(context)) - known)
    if unknown:
        raise ValueError(
            f"dag_run.conf has key(s) {unknown} that no parameter of this DAG knows; "
            f"its parameters are {sorted(known)}"
        )


def run_param(context: Any, key: str, default: Any = None) -> Any:
    """A run's parameter: the validated Params (conf merged in), else the raw conf."""
    params = context.get("params") or {}
    if key in params and params[key] is not None:
        return params[key]
    return run_conf(context).get(key, default)


def conf_flag(context: Any, key: str) -> bool:
    """``dag_run.conf.<key>``, false when absent; ValueError unless it is a JSON boolean."""
    value = run_conf(context).get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"dag_run.conf.{key} must be true or false, got {value!r}")
    return value


def ignore_window(context: Any) -> bool:
    """``dag_run.conf.ignore_window``: crawl now even outside the region's window."""
    return conf_flag(context, "ignore_window")


def _conf_date(conf: dict) -> date | None:
    """``conf.trading_date`` as a date (not yet checked against a calendar), or None;
    ValueError naming the value unless it is YYYY-MM-DD."""
    value = conf.get("trading_date")
    if not value:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"dag_run.conf.trading_date must be YYYY-MM-DD, got {value!r}") from None


def _clock(region: Region | TradingDays) -> TradingDays:
    return region if isinstance(region, TradingDays) else RegionClock.of(region)


def trading_date(region: Region | TradingDays, run: Any, now: datetime | None = None) -> date:
    """The trading date of a run, for a region's DAGs (a Region or its clock) or rollup__global
    (a GlobalClock): the one reader every task, sensor, macro, alert and the coverage matrix
    ask. ``run`` is a task's context, or a DagRun alone (a template macro has no task context;
    the coverage matrix reads runs from the metadata DB).

    1. ``dag_run.conf.trading_date`` (YYYY-MM-DD, must be a trading day);
    2. else the local date of ``data_interval_start`` (the timetable makes that the trading day);
    3. else, for a run without a logical date (REST ``"logical_date": null``), the latest
       trading day whose run was due at ``now`` (default: now): for a region, whose off-peak
       window has opened.
    """
    if isinstance(run, Mapping):
        conf, start = run_conf(run), run.get("data_interval_start")
    else:
        conf, start = _conf_of(run), run.data_interval_start
    clock = _clock(region)
    day = _conf_date(conf)
    if day is not None:
        return clock.check_day(day)
    if start is not None:
        return clock.day_of_interval_start(start)
    return clock.latest_due_day(now or datetime.now(tz=UTC))
