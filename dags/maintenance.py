"""Airflow DAG file: maintenance__db_clean, the daily purge of Airflow's old run history."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from offpeak import settings
from offpeak.maintenance import TABLES, db_clean
from offpeak.naming import DB_CLEAN_DAG_ID

DOC = f"""\
Purges Airflow's run history (DAG runs, task instances, XComs, logs, ...) that started more
than `OFFPEAK_METADATA_RETENTION_DAYS` days (default {settings.DEFAULT_METADATA_RETENTION_DAYS},
at least {settings.MIN_METADATA_RETENTION_DAYS}) before the run, with
Airflow's own `airflow db clean --skip-archive`. It reads the metadata DB's URI from the
Airflow connection `OFFPEAK_METADATA_CONN_ID` (default `airflow_metadata`).

Tables: {", ".join(f"`{t}`" for t in TABLES)}. The warehouse (rows, `load_audit`) is not
touched. See docs/metadata-retention.md.
"""

with DAG(
    dag_id=DB_CLEAN_DAG_ID,
    description="Purge Airflow's run history older than OFFPEAK_METADATA_RETENTION_DAYS",
    # Daily, UTC; every run purges a window of its own, so a missed day is caught up by the next.
    schedule="15 12 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance"],
    doc_md=DOC,
    default_args={
        "owner": "platform",
        "retries": 1,
        "retry_delay": timedelta(minutes=10),
    },
) as dag:
    PythonOperator(
        task_id="db_clean", python_callable=db_clean, execution_timeout=timedelta(hours=2)
    )
