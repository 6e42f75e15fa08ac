"""The project's environment settings (``OFFPEAK_*``): the one module that reads them."""

# Each is read when its function is called, never at import, so a test (or a task) that sets
# a variable sees it at once; unset or empty means the default. The names a crawl subprocess
# and ScrapeOperator agree on (OFFPEAK_STATS_FILE and the like) are a contract of their own,
# in offpeak.crawl.contract.

from __future__ import annotations

import os
from pathlib import Path

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")
# This checkout: plugins/offpeak/settings.py -> the repository root.
_REPO = Path(__file__).resolve().parents[2]


def _flag(name: str, default: bool) -> bool:
    """``1``/``true``/``yes`` is True, ``0``/``false``/``no`` is False (any case); anything
    else, or unset, is ``default``."""
    value = os.environ.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


def config_dir() -> Path:
    """``OFFPEAK_CONFIG_DIR``: the folder holding regions.yaml and sites/*.yaml.
    Default: ``include/config`` of this checkout."""
    return Path(os.environ.get("OFFPEAK_CONFIG_DIR") or _REPO / "include" / "config")


def data_root() -> str:
    """``OFFPEAK_DATA_ROOT``: the URI under which raw, clean and reject files live
    (``s3://conn_id@bucket/prefix`` works). Default: ``$AIRFLOW_HOME/offpeak-data`` on the
    local disk (``~/airflow/offpeak-data`` without ``AIRFLOW_HOME``)."""
    root = os.environ.get("OFFPEAK_DATA_ROOT")
    if root:
        return root
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return Path(home, "offpeak-data").absolute().as_uri()


def warehouse_conn_id() -> str:
    """``OFFPEAK_WAREHOUSE_CONN_ID``: the Airflow Postgres connection of the warehouse.
    Default: ``warehouse``."""
    return os.environ.get("OFFPEAK_WAREHOUSE_CONN_ID") or "warehouse"


def warehouse_schema() -> str:
    """``OFFPEAK_WAREHOUSE_SCHEMA``: the PostgreSQL schema of the site tables, the audit and
    the rollups. Default: ``scraped``."""
    return os.environ.get("OFFPEAK_WAREHOUSE_SCHEMA") or "scraped"


def deadline_alerts() -> bool:
    """``OFFPEAK_DEADLINE_ALERTS``: give the scrape DAGs their Deadline Alert (a run unfinished
    when its window closes). ``false`` leaves it out (see offpeak.alerts.deadlines). Default:
    true."""
    return _flag("OFFPEAK_DEADLINE_ALERTS", True)


def ignore_windows() -> bool:
    """``OFFPEAK_IGNORE_WINDOWS``: crawl at once, outside the off-peak windows too, in every
    run (a deployment without peak hours, such as `make run`'s demo). Default: false."""
    return _flag("OFFPEAK_IGNORE_WINDOWS", False)


def progress_interval() -> float:
    """``OFFPEAK_PROGRESS_INTERVAL``: seconds between a crawl's progress lines in the task
    log; 0 turns them off. Default: 30."""
    return float(os.environ.get("OFFPEAK_PROGRESS_INTERVAL") or 30)


# The Coverage page shows 20 trading dates by default (offpeak.coverage.matrix.DEFAULT_DAYS):
# four weeks of calendar and the holidays in them. A shorter retention would turn its failed
# cells into missing ones (docs/metadata-retention.md).
MIN_METADATA_RETENTION_DAYS = 35
DEFAULT_METADATA_RETENTION_DAYS = 90


def metadata_retention_days() -> int:
    """``OFFPEAK_METADATA_RETENTION_DAYS``: days of DAG runs, task instances, XComs and logs
    that maintenance__db_clean keeps in Airflow's metadata DB; older rows are purged. A whole
    number, at least 35. Default: 90. ValueError naming the setting for anything else."""
    raw = os.environ.get("OFFPEAK_METADATA_RETENTION_DAYS", "").strip()
    if not raw:
        return DEFAULT_METADATA_RETENTION_DAYS
    try:
        days = int(raw)
    except ValueError:
        days = None
    if days is None or days < MIN_METADATA_RETENTION_DAYS:
        raise ValueError(
            f"OFFPEAK_METADATA_RETENTION_DAYS={raw!r} is not a whole number of days of at least "
            f"{MIN_METADATA_RETENTION_DAYS} (the Coverage page's 20 trading dates need them); "
            f"set it to e.g. {DEFAULT_METADATA_RETENTION_DAYS}, or unset it for the default "
            f"{DEFAULT_METADATA_RETENTION_DAYS}"
        )
    return days


def metadata_conn_id() -> str:
    """``OFFPEAK_METADATA_CONN_ID``: the Airflow connection holding Airflow's own metadata DB
    URI, for maintenance__db_clean (a task's process is denied the metadata DB otherwise).
    Default: ``airflow_metadata``."""
    return os.environ.get("OFFPEAK_METADATA_CONN_ID") or "airflow_metadata"
