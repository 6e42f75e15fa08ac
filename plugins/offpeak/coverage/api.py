"""The Coverage page's FastAPI app, mounted by the api-server at ``/coverage``.

* ``GET /coverage/``: the page (one static HTML file; the Airflow UI shows it in its nav).
* ``GET /coverage/api/matrix?days=20&site=…&region=…&state=…``: the matrix as JSON, the
  same document as ``python -m offpeak.coverage --json``.
* ``POST /coverage/api/backfills``: the backfills that fill the selected cells, one per DAG
  (from its first to its last selected date). The page then creates each through Airflow's
  own ``POST /api/v2/backfills``, which checks the user's rights again.

Airflow does not protect a plugin's endpoints. Every endpoint here needs an authenticated
Airflow user (the UI's session cookie or a ``Authorization: Bearer`` JWT; 401 without),
shows only the DAGs the auth manager lets the user read, and plans backfills only of DAGs
the user may run (403 naming the others).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from offpeak.coverage import service

PAGE = Path(__file__).with_name("page.html")

app = FastAPI(
    title="Off-peak coverage",
    description="What data the warehouse holds per site, region and trading date.",
)


def _readable_dag_ids(user: Any, session: Any) -> set[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)


def _may_run(user: Any, dag_id: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    return get_auth_manager().is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    )


@app.get("/", response_class=HTMLResponse, include_in_schema=False)
def page(user: GetUserDep) -> HTMLResponse:
    """The page: a signed-in user only (the UI's cookie); its data comes from the API below."""
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@app.get("/api/matrix")
def matrix(
    user: GetUserDep,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=400)] = 20,
    site: Annotated[list[str] | None, Query()] = None,
    region: Annotated[list[str] | None, Query()] = None,
    state: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    """The coverage matrix of the DAGs the user may read."""
    readable = _readable_dag_ids(user, session)
    try:
        result = service.current_matrix(
            session, days=days, sites=site or (), regions=region or (), states=state or (),
            dag_ids=readable,
        )  # fmt: skip
    except ValueError as exc:  # an unknown state, named with the known ones
        raise HTTPException(400, str(exc)) from None
    return result.to_dict()


class SelectedCell(BaseModel):
    dag_id: str
    date: date


class BackfillPlanRequest(BaseModel):
    cells: list[SelectedCell] = Field(min_length=1)
    reprocess_behavior: Literal["none", "failed", "completed"] = "failed"
    ignore_window: bool = False


@app.post("/api/backfills")
def plan_backfills(
    body: BackfillPlanRequest, user: GetUserDep, session: SessionDep
) -> dict[str, Any]:
    """The ``POST /api/v2/backfills`` bodies that fill the selected cells: one per DAG."""
    readable = _readable_dag_ids(user, session)
    unknown = sorted({c.dag_id for c in body.cells} - readable)
    if unknown:
        raise HTTPException(404, f"no such DAG, or you may not read it: {', '.join(unknown)}")
    refused = sorted({c.dag_id for c in body.cells if not _may_run(user, c.dag_id)})
    if refused:
        raise HTTPException(
            403, f"user {user.get_name()!r} may not run (backfill) {', '.join(refused)}"
        )
    try:
        backfills = service.plan_backfills(
            session,
            [(c.dag_id, c.date) for c in body.cells],
            reprocess_behavior=body.reprocess_behavior,
            ignore_window=body.ignore_window,
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return {"backfills": backfills, "planned_at": datetime.now(tz=UTC).isoformat()}
