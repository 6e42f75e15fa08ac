"""Callables of the transform and load tasks; each passes pointers and counts, never rows."""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

from offpeak import metrics, retries, settings

if TYPE_CHECKING:
    from offpeak.config import Site

log = logging.getLogger(__name__)


@retries.fail_fast()
def transform(site: str, region: str, **context: Any) -> dict[str, Any]:
    """Normalise the scrape task's raw feed into a clean CSV and a rejects file."""
    from offpeak.config import get_site
    from offpeak.pipeline import storage
    from offpeak.pipeline.transform import RejectRatioExceeded, transform_file

    cfg, regions = get_site(site)
    scraped = context["ti"].xcom_pull(task_ids="scrape")
    trading_date = date.fromisoformat(scraped["trading_date"])
    key = storage.run_key(context["run_id"])
    try:
        result = transform_file(
            cfg,
            storage.from_uri(scraped["uri"]),
            storage.partition("clean", site, region, trading_date, key),
            storage.partition("rejects", site, region, trading_date, key),
            zone=regions[region].timezone,
            trading_date=trading_date,
        )
    except Exception as exc:
        counts = exc.counts if isinstance(exc, RejectRatioExceeded) else None
        metrics.transformed(site, region, counts, ok=False)
        raise
    metrics.transformed(site, region, result, ok=True)
    log.info(
        "Transformed %s records: %s clean, %s rejected (%.1f%%); reasons: %s; %s natural "
        "key(s) on more than one record, %s record(s) set aside (on_duplicate_key: %s)",
        result["records"], result["clean"], result["rejected"], 100 * result["reject_ratio"],
        result["top_reject_reasons"], result["duplicate_keys"], result["duplicate_records"],
        cfg.on_duplicate_key,
    )  # fmt: skip
    return {**result, "trading_date": scraped["trading_date"]}


@retries.fail_fast()
def load(site: str, region: str, **context: Any) -> dict[str, Any]:
    """Replace the warehouse partition (site, region, trading date) with the clean file, and
    record an event on the site table's Asset with the partition's row counts."""
    from airflow.sdk.exceptions import AirflowSkipException

    from offpeak.config import get_site
    from offpeak.params import run_param
    from offpeak.warehouse.assets import table_asset

    cfg, _ = get_site(site)
    ti = context["ti"]
    scraped = ti.xcom_pull(task_ids="scrape")
    cleaned = ti.xcom_pull(task_ids="transform")
    if run_param(context, "dry_run", False):
        raise AirflowSkipException(
            f"dry run: {cleaned['clean']} clean rows in {cleaned['clean_uri']} were not loaded"
        )
    try:
        result = _load_partition(cfg, region, scraped, cleaned, context)
    except Exception:
        metrics.load_failed(site, region)
        raise
    metrics.loaded(site, region, result)
    log.info("Loaded into %s: %s", result["table"], result)
    counts = ("partition_rows", "rows_inserted", "rows_updated", "rows_deleted")
    context["outlet_events"][table_asset(site)].extra = {
        "region": region,
        "trading_date": cleaned["trading_date"],
        **{k: result[k] for k in counts},
        "complete": result["complete"],
    }
    return result


def _load_partition(
    cfg: Site, region: str, scraped: dict[str, Any], cleaned: dict[str, Any], context: Any
) -> dict[str, Any]:
    """The clean file into the warehouse in one transaction (load_partition)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from offpeak.pipeline import storage
    from offpeak.warehouse.load import load_partition

    conn = PostgresHook(postgres_conn_id=settings.warehouse_conn_id()).get_conn()
    if not hasattr(conn, "pgconn"):
        raise RuntimeError("the load needs psycopg 3; install psycopg and SQLAlchemy 2")
    try:
        return load_partition(
            conn,
            cfg,
            storage.from_uri(cleaned["clean_uri"]),
            region=region,
            trading_date=date.fromisoformat(cleaned["trading_date"]),
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            expected_rows=cleaned["clean"],
            rows_rejected=cleaned["rejected"],
            raw_uri=scraped["uri"],
            raw_sha256=scraped["sha256"],
            complete=scraped.get("complete", True),
            kept_keys=storage.from_uri(cleaned["rejected_keys_uri"])
            if cleaned.get("rejected_keys_uri")
            else None,
            duplicate_keys=cleaned.get("duplicate_keys", 0),
        )
    finally:
        conn.close()
