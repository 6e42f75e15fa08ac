"""The stack's auth manager: Airflow's SimpleAuthManager, plus one user whose DAG permissions
are narrower than its role. `analyst` (role viewer) may read only the europe DAGs.

A deployment gets per-DAG permissions from an auth manager such as FAB or Keycloak. The simple
manager has only global roles, so without this a test could not show that a user who may not
read a DAG does not see it (the Coverage page, tests/stack/test_coverage.py). Everyone else is
judged by SimpleAuthManager itself.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

SCOPED_USER = "analyst"
SCOPED_SUFFIX = "__europe"


class RegionScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None,
                          details: Any = None) -> bool:  # fmt: skip
        if user.get_name() == SCOPED_USER:
            dag_id = getattr(details, "id", None)
            if not dag_id or not dag_id.endswith(SCOPED_SUFFIX):
                return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
