"""Every tier's session set-up: Airflow's environment before anything imports Airflow, one
marker per tier from the test's folder, and the session's services as a lazy plugin
(tests/support/services.py): a service starts only when a test asks for it.

Tiers: tests/unit (no service), tests/integration and tests/dags (``integration``:
PostgreSQL, the demo sites, dag.test()), tests/stack (``stack``: a real scheduler,
api-server and browser). `make test` runs all three; `make test-fast` all but ``stack``.
"""

from __future__ import annotations

import sys

import pytest

pytest_plugins = ["support.services"]

TIERS = {"integration": "integration", "dags": "integration", "stack": "stack"}


def pytest_configure(config: pytest.Config) -> None:
    if "airflow.settings" in sys.modules:
        raise pytest.UsageError(
            "Airflow was imported before tests/conftest.py set its environment (it would use "
            "~/airflow/airflow.db): a conftest.py imports it at module level; import it lazily."
        )
    from support import services

    services.configure()


def pytest_unconfigure(config: pytest.Config) -> None:
    from support import services

    services.unconfigure()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(item.config.rootpath).parts
        tier = TIERS.get(parts[1]) if len(parts) > 2 and parts[0] == "tests" else None
        if tier:
            item.add_marker(tier)
