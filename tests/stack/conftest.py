"""The stack tier: one real Airflow stack (scheduler, api-server, dag-processor, triggerer)
per session, shared by every test of this folder, on the session's PostgreSQL and demo sites."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from offpeak.config import load_project
from support.stack import (
    CLOSED_FOR,
    FUNDS_API_KEY,
    FUNDS_KEYED_URL,
    AirflowStack,
    AlertReceiver,
)


@pytest.fixture(scope="session", autouse=True)
def _services(session_env) -> None:
    """PostgreSQL and the demo sites, for every test of this tier."""


@pytest.fixture
def warehouse(stack):
    """In this tier, runs are the stack's: a psycopg connection (autocommit) to the warehouse
    they load (not the dag.test() tier's)."""
    import psycopg

    with psycopg.connect(stack.pg.uri(stack.WAREHOUSE), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def alerts():
    receiver = AlertReceiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def stack(pg, demo_url, alerts, tmp_path_factory):
    """One Airflow stack for the session's scheduler tests, with this config copy:
    windows closed (opening in 6 h), rollup sensors checking every 5 s, 4 active runs for
    funds and equities, and for funds no retries (tests make it fail on purpose) and an API
    key in its start URL."""
    stack = AirflowStack(pg, tmp_path_factory.mktemp("stack"), alerts_url=alerts.url)
    later = datetime.now(tz=UTC) + CLOSED_FOR
    regions = load_project(stack.config_dir).regions
    stack.edit_regions(**dict.fromkeys(regions, (later, later + timedelta(hours=1))))
    stack.edit_yaml("regions.yaml", lambda d: d["rollups"].update(poke_interval_seconds=5))
    stack.edit_yaml("sites/funds.yaml", lambda d: d.setdefault("dag", {}).update(retries=0))
    # Unpausing a DAG makes a scheduled run that waits (deferred) for the closed window; with
    # 4 active runs allowed, manual runs of funds and equities do not queue behind it.
    for site in ("funds", "equities"):
        stack.edit_yaml(
            f"sites/{site}.yaml", lambda d: d.setdefault("dag", {}).update(max_active_runs=4)
        )
    # funds sits behind an API key: the connection's password, sent in the start URL.
    stack.edit_yaml("sites/funds.yaml", lambda d: d.update(start_urls=[FUNDS_KEYED_URL]))
    host, port = stack.env["AIRFLOW_CONN_SITE_FUNDS"].removeprefix("http://").split(":")
    stack.env["AIRFLOW_CONN_SITE_FUNDS"] = json.dumps(
        {"conn_type": "http", "host": host, "port": int(port), "password": FUNDS_API_KEY}
    )
    stack.windows_open_at = later
    from offpeak.factory import dag_ids  # imports Airflow: not before the session's env is set

    try:
        stack.start()
        stack.wait_parsed(dag_ids(load_project(stack.config_dir)))
        yield stack
    finally:
        stack.stop()
