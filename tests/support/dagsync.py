"""Register the DAG bundles and their DAGs in the metadata DB once, before a test starts
several `airflow dags test` processes at once (docs/decisions.md, "Concurrent `airflow dags
test`"): each process registers them on start-up, and two first registrations at once collide
on a primary key (dag_bundle's, then dag's)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from support import REPO

AIRFLOW = Path(sys.executable).parent / "airflow"


def register_dags(env: Mapping[str, str]) -> None:
    """`airflow dags reserialize` with the environment the concurrent runs will have (its
    config folder decides which DAGs exist): afterwards they find every row they would
    insert, and only read or update it."""
    done = subprocess.run(
        [str(AIRFLOW), "dags", "reserialize"],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"airflow dags reserialize failed:\n{done.stdout}{done.stderr}"
