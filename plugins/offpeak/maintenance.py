"""maintenance__db_clean's job: purge Airflow's run history older than the retention period."""

# The purge is Airflow's own `airflow db clean`, run as a subprocess: a task's process may not
# use the metadata DB itself (Airflow 3 replaces its sql_alchemy_conn), so the subprocess gets
# the URI from an Airflow connection (offpeak.connections.metadata_db_uri). What is kept and
# why (the Coverage page, load_audit, rollups) is in docs/metadata-retention.md.

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from offpeak import settings

# The run history only. `airflow db clean` adds each table's dependents (dag_run brings
# task_instance, task_state_store and deadline; task_instance brings task_instance_history and
# xcom), and keeps the latest scheduled run of each DAG whatever its age (the scheduler
# computes the next run from it). A table the deployment lacks (celery_* without Celery's
# database result backend) is skipped.
TABLES = (
    "dag_run", "task_instance", "task_instance_history", "xcom", "task_reschedule",
    "task_state_store", "deadline", "callback", "log", "job", "asset_event",
    "partitioned_asset_key_log", "revoked_token", "connection_test_request",
    "celery_taskmeta", "celery_tasksetmeta", "_xcom_archive",
)  # fmt: skip
# Left alone: dag, dag_version and serialized_dag (the DAGs' definitions: they grow only when
# a config changes, not per run), import_error (the config errors dags/config_check.py shows)
# and trigger (the triggerer deletes triggers no task uses any more).
log = logging.getLogger(__name__)
BATCH_SIZE = 5_000  # rows per delete transaction: short locks on tables the scheduler writes
TIMEOUT_SECONDS = 3_600
_CHECKING = re.compile(r"^Checking table (\S+)")
_FOUND = re.compile(r"^Found (\d+) rows meeting deletion criteria")


@dataclass(frozen=True)
class Purge:
    """One `airflow db clean`: rows of ``tables`` older than ``before`` are deleted, not
    archived (the _airflow_deleted__* tables it would fill are never read and would grow for
    ever), ``batch_size`` rows per transaction."""

    before: datetime
    retention_days: int
    tables: tuple[str, ...] = TABLES
    batch_size: int = BATCH_SIZE

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "airflow", "db", "clean",
            "--clean-before-timestamp", self.before.isoformat(),
            "--tables", ",".join(self.tables),
            "--batch-size", str(self.batch_size),
            "--skip-archive", "--yes", "--error-on-cleanup-failure",
        ]  # fmt: skip


def plan(run_after: datetime, retention_days: int) -> Purge:
    """The purge of the run due at ``run_after`` (aware): everything that started more than
    ``retention_days`` before it. Re-running that run purges the same window."""
    if run_after.tzinfo is None:
        raise ValueError(f"run_after must be timezone-aware, not {run_after!r}")
    return Purge(before=run_after - timedelta(days=retention_days), retention_days=retention_days)


def purged_rows(output: str) -> dict[str, int]:
    """Rows deleted per table, read from `airflow db clean`'s report ("Checking table T" then
    "Found N rows meeting deletion criteria.")."""
    counts: dict[str, int] = {}
    table = None
    for line in output.splitlines():
        line = line.strip()
        if m := _CHECKING.match(line):
            table = m[1]
        elif (m := _FOUND.match(line)) and table is not None:
            counts[table] = int(m[1])
            table = None
    return counts


def run_purge(purge: Purge, metadata_uri: str) -> dict[str, int]:
    """Run ``purge`` against the metadata DB at ``metadata_uri``: rows deleted per table.
    RuntimeError with the command's last lines when it fails."""
    env = {
        **os.environ,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_uri,
    }
    # The task process's blocked value (Airflow 3) must not come back through the old name.
    env.pop("AIRFLOW__CORE__SQL_ALCHEMY_CONN", None)
    done = subprocess.run(
        purge.command(),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    output = done.stdout + done.stderr
    for line in output.splitlines():  # its report (stdout), then its warnings (stderr)
        log.info("%s", line)
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-20:])
        raise RuntimeError(
            f"airflow db clean failed (exit {done.returncode}) purging rows before "
            f"{purge.before.isoformat()} from {', '.join(purge.tables)}:\n{tail}"
        )
    return purged_rows(done.stdout)


def db_clean(dag_run: Any) -> dict[str, Any]:
    """The task: purge what started ``OFFPEAK_METADATA_RETENTION_DAYS`` before this run was
    due. Returns (to XCom) the cut-off, the retention and the rows deleted per table."""
    from offpeak.connections import metadata_db_uri

    purge = plan(dag_run.run_after, settings.metadata_retention_days())
    log.info(
        "Purging Airflow's run history that started before %s (%s days before %s)",
        purge.before.isoformat(),
        purge.retention_days,
        dag_run.run_after.isoformat(),
    )
    deleted = run_purge(purge, metadata_db_uri())
    return {
        "before": purge.before.isoformat(),
        "retention_days": purge.retention_days,
        "deleted": {t: n for t, n in sorted(deleted.items()) if n},
    }
