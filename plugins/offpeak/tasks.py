"""Callables of the transform and load tasks; each passes pointers and counts, never rows."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from offpeak import config, metrics, retries
from offpeak.connections import warehouse_connection
from offpeak.params import run_param
from offpeak.partition import Partition
from offpeak.pipeline import storage
from offpeak.warehouse.assets import table_asset

if TYPE_CHECKING:
    from offpeak.config import Site

log = logging.getLogger(__name__)
# The factory imports this module to build each DAG: the transform and load machinery
# (offpeak.pipeline.transform, offpeak.warehouse.load) is imported by the task that runs it.


@retries.fail_fast()
def transform(site: str, region: str, **context: Any) -> dict[str, Any]:
    """Normalise the scrape task's raw feed into a clean CSV and a rejects file."""
    from offpeak.pipeline.transform import RejectRatioExceeded, transform_file

    cfg, regions = config.get_site(site)
    scraped = context["ti"].xcom_pull(task_ids="scrape")
    part = Partition.from_xcom(scraped, context["run_id"])
    try:
        result = transform_file(
            cfg,
            storage.from_uri(scraped["uri"]),
            storage.partition("clean", part),
            storage.partition("rejects", part),
            zone=regions[region].timezone,
            trading_date=part.trading_date,
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
    return {**result, "trading_date": part.trading_date.isoformat()}


@retries.fail_fast()
def load(site: str, region: str, **context: Any) -> dict[str, Any]:
    """Replace the warehouse partition (site, region, trading date) with the clean file, and
    record an event on the site table's Asset with the partition's row counts."""
    from airflow.sdk.exceptions import AirflowSkipException

    cfg, _ = config.get_site(site)
    ti = context["ti"]
    scraped = ti.xcom_pull(task_ids="scrape")
    cleaned = ti.xcom_pull(task_ids="transform")
    if run_param(context, "dry_run", False):
        raise AirflowSkipException(
            f"dry run: {cleaned['clean']} clean rows in {cleaned['clean_uri']} were not loaded"
        )
    try:
        part = Partition.from_xcom(scraped, context["run_id"])
        result = _load_partition(cfg, part, scraped, cleaned, context["dag"].dag_id)
    except Exception:
        metrics.load_failed(site, region)
        raise
    metrics.loaded(site, region, result)
    log.info("Loaded into %s: %s", result["table"], result)
    if not result["complete"]:  # a partial day: announced (alerts.partial)
        alerts_cfg = config.load_project(only_site=site).alerts  # regions.yaml and this site
        if alerts_cfg.partial == "each":
            from offpeak.alerts.notifier import partial_day

            partial_day(
                alerts_cfg.http_conn_id, dag_id=context["dag"].dag_id, run_id=context["run_id"],
                scraped=scraped, loaded=result,
            )  # fmt: skip
    counts = ("partition_rows", "rows_inserted", "rows_updated", "rows_deleted")
    context["outlet_events"][table_asset(site)].extra = {
        "region": region,
        "trading_date": part.trading_date.isoformat(),
        **{k: result[k] for k in counts},
        "complete": result["complete"],
    }
    return result


def _load_partition(
    cfg: Site, part: Partition, scraped: dict[str, Any], cleaned: dict[str, Any], dag_id: str
) -> dict[str, Any]:
    """The clean file into the warehouse in one transaction (load_partition)."""
    from offpeak.warehouse.load import CleanFile, RawFeed, load_partition

    conn = warehouse_connection()
    try:
        return load_partition(
            conn,
            cfg,
            part,
            CleanFile.from_xcom(cleaned),
            dag_id=dag_id,
            raw=RawFeed.from_xcom(scraped),
        )
    finally:
        conn.close()
