"""Unit tests for plugins/offpeak/maintenance.py: the purge's window, command and report."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from offpeak import maintenance
from offpeak.maintenance import Purge, plan, purged_rows

# What `airflow db clean` (3.3.2) prints for each table, between its own log lines.
REPORT = """\
Checking table dag_run
Found 3 rows meeting deletion criteria.
[2026-12-07T12:00:00Z] {db_cleanup.py:300} INFO - Deleting...

Checking table task_instance
Found 0 rows meeting deletion criteria.

Checking table xcom
Found 12 rows meeting deletion criteria.
"""


def test_the_window_is_the_retention_before_the_run_and_the_same_on_a_rerun():
    due = datetime(2026, 12, 7, 12, 15, tzinfo=UTC)
    purge = plan(due, 90)
    assert purge.before == datetime(2026, 9, 8, 12, 15, tzinfo=UTC)
    assert plan(due, 90) == purge
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(datetime(2026, 12, 7), 90)


def test_the_command_deletes_without_archiving_the_run_history_only():
    argv = Purge(before=datetime(2026, 9, 8, tzinfo=UTC), retention_days=90).command()
    assert argv[1:5] == ["-m", "airflow", "db", "clean"]
    assert argv[argv.index("--clean-before-timestamp") + 1] == "2026-09-08T00:00:00+00:00"
    assert {"--skip-archive", "--yes", "--error-on-cleanup-failure"} <= set(argv)
    tables = argv[argv.index("--tables") + 1].split(",")
    assert {"dag_run", "task_instance", "xcom", "log", "job"} <= set(tables)
    # The DAGs' definitions and the config errors the UI shows stay.
    assert not {"dag", "dag_version", "import_error"} & set(tables)


def test_the_tables_are_ones_airflow_db_clean_knows():
    from airflow.utils.db_cleanup import config_dict

    assert set(maintenance.TABLES) <= set(config_dict)


def test_the_report_gives_rows_deleted_per_table():
    assert purged_rows(REPORT) == {"dag_run": 3, "task_instance": 0, "xcom": 12}
