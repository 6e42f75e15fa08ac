"""DAG integrity tier: parses dags/ with a real DagBag on the session's PostgreSQL (started on
first use by tests/support/services.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _services(session_env) -> None:
    """PostgreSQL and the demo sites, for every test of this tier."""
