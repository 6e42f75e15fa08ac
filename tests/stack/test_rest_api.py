"""The public REST API of the real api-server, driven with the official Python client
(apache-airflow-client), as docs/operating.md's "Triggering over REST" does: a token, a DAG
unpaused, a run triggered with conf, its XCom read back, a backfill, and no import errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from airflow_client.client import (
    ApiClient,
    BackfillApi,
    BackfillPostBody,
    Configuration,
    DAGApi,
    DAGPatchBody,
    DagRunApi,
    DagRunState,
    DagRunType,
    ImportErrorApi,
    TriggerDAGRunPostBody,
    XComApi,
)
from airflow_client.client.exceptions import ForbiddenException, UnauthorizedException

DAG_ID = "scrape__fx_rates__oceania"  # other tests use it only for other trading dates
SYDNEY = ZoneInfo("Australia/Sydney")
ROWS = 57  # valid fx_rates rows the demo site serves per region and trading date
REJECTED = 3  # and rows transform rejects: the crawl's "items" counts both
RUN_ID = "rest_api__2026-10-13"
# When the 13 Oct session's window opened. The DAG allows one active run (max_active_runs 1)
# and unpausing it makes a scheduled run that defers until the (closed) window opens: the
# scheduler starts queued runs in run_after order, so this run goes first.
RUN_AFTER = datetime(2026, 10, 13, 17, 30, tzinfo=SYDNEY)
T = TypeVar("T")


@pytest.fixture(scope="module")
def api(stack):
    """An API client authenticated with a JWT from POST /auth/token (user admin)."""
    with ApiClient(Configuration(host=stack.api_url, access_token=stack.token())) as client:
        yield client


def poll(stack, fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str) -> T:
    """``fetch()`` until ``done`` says so; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        stack.procs.check()
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {value!r} after {timeout:.0f}s\n{stack.log_tail()}")
        time.sleep(2)


def rows_on(warehouse, day: date) -> int:
    (count,) = warehouse.execute(
        "SELECT count(*) FROM scraped.fx_rates WHERE region = 'oceania' AND trading_date = %s",
        (day,),
    ).fetchone()
    return count


def scrape_pointer(api, run_id: str) -> dict:
    """The `scrape` task's return_value, as the UI's XCom tab shows it."""
    entry = XComApi(api).get_xcom_entry(DAG_ID, "scrape", run_id, "return_value")
    return entry.actual_instance.value  # a oneOf wrapper: native value or string


def test_a_call_without_a_valid_token_is_rejected(stack):
    """No Authorization header: 401 "Not authenticated". A bearer token the api-server did not
    sign: 403 "Invalid JWT token" (Airflow 3.3.2 answers 403 here, not 401)."""
    for token, error, status, detail in (
        (None, UnauthorizedException, 401, "Not authenticated"),
        ("not-a-jwt", ForbiddenException, 403, "Invalid JWT token"),
    ):
        with (
            ApiClient(Configuration(host=stack.api_url, access_token=token)) as client,
            pytest.raises(error) as rejected,
        ):
            DAGApi(client).get_dag(DAG_ID)
        assert (rejected.value.status, detail in rejected.value.body) == (status, True), token


def test_a_triggered_run_scrapes_the_trading_date_in_its_conf(stack, api, warehouse):
    """Triggered with no logical date and conf {"trading_date": "2026-10-13", "ignore_window":
    true}, the run crawls at once, outside the window, and loads that date's 57 rows."""
    dags, runs = DAGApi(api), DagRunApi(api)
    # Unpaused earlier, the DAG would have a deferred scheduled run holding its one slot.
    assert dags.get_dag(DAG_ID).is_paused, f"another test unpaused {DAG_ID} before this one"
    conf = {"trading_date": "2026-10-13", "ignore_window": True}
    triggered = runs.trigger_dag_run(
        DAG_ID,
        TriggerDAGRunPostBody(dag_run_id=RUN_ID, logical_date=None, run_after=RUN_AFTER, conf=conf),
    )
    assert (triggered.dag_run_id, triggered.run_type) == (RUN_ID, DagRunType.MANUAL)
    assert triggered.logical_date is None and triggered.data_interval_start is None
    assert triggered.state == DagRunState.QUEUED  # a paused DAG's runs wait

    assert dags.patch_dag(DAG_ID, DAGPatchBody(is_paused=False)).is_paused is False
    assert dags.get_dag(DAG_ID).is_paused is False

    run = poll(
        stack,
        lambda: runs.get_dag_run(DAG_ID, RUN_ID),
        lambda r: r.state in (DagRunState.SUCCESS, DagRunState.FAILED),
        180,
        f"{RUN_ID} to finish",
    )
    assert run.state == DagRunState.SUCCESS, run
    assert run.conf == conf

    pointer = scrape_pointer(api, RUN_ID)
    assert {k: pointer.get(k) for k in ("trading_date", "region", "items", "complete")} == {
        "trading_date": "2026-10-13",
        "region": "oceania",
        "items": ROWS + REJECTED,
        "complete": True,
    }, pointer
    assert datetime.fromisoformat(pointer["crawl_started_at"]) < stack.windows_open_at
    assert rows_on(warehouse, date(2026, 10, 13)) == ROWS


def test_a_bad_param_is_a_400_whose_detail_is_one_readable_line(stack):
    """Airflow's own detail goes on with jsonschema's dumps of the schema and the value."""
    status, body = stack.http(
        "POST", f"/api/v2/dags/{DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"max_pages": "many"}}, stack.token(),
    )  # fmt: skip
    assert status == 400, body
    assert body["detail"] == (
        "Invalid input for param max_pages: 'many' is not of type 'null', 'integer'"
    ), body


def test_a_backfill_creates_the_sydney_trading_days_of_its_range(stack, api, warehouse):
    """Backfilling 2026-10-14 .. 2026-10-16 (plain dates: midnight UTC) with conf
    {"ignore_window": true} runs Wed 14, Thu 15 and Fri 16 Oct, Sydney trading days, at once."""
    assert DAGApi(api).patch_dag(DAG_ID, DAGPatchBody(is_paused=False)).is_paused is False
    backfills = BackfillApi(api)
    body = BackfillPostBody(
        dag_id=DAG_ID,
        from_date=datetime(2026, 10, 14, tzinfo=UTC),
        to_date=datetime(2026, 10, 16, tzinfo=UTC),
        dag_run_conf={"ignore_window": True},
    )
    planned = backfills.create_backfill_dry_run(body)
    assert planned.total_entries == 3, planned
    backfill = backfills.create_backfill(body)
    assert backfill.dag_run_conf == {"ignore_window": True}

    finished = poll(
        stack,
        lambda: backfills.get_backfill(backfill.id),
        lambda b: b.completed_at is not None,
        180,
        f"backfill {backfill.id} to complete",
    )
    assert finished.completed_at is not None
    made = DagRunApi(api).get_dag_runs(
        DAG_ID,
        run_type=["backfill"],
        logical_date_gte=datetime(2026, 10, 10, tzinfo=UTC),
        logical_date_lte=datetime(2026, 10, 20, tzinfo=UTC),
        order_by=["logical_date"],
    )
    assert made.total_entries == 3, [(r.dag_run_id, r.state) for r in made.dag_runs]
    assert [r.state for r in made.dag_runs] == [DagRunState.SUCCESS] * 3, made.dag_runs
    trading_dates = [r.data_interval_start.astimezone(SYDNEY).date() for r in made.dag_runs]
    assert trading_dates == [date(2026, 10, 14), date(2026, 10, 15), date(2026, 10, 16)]
    for run, day in zip(made.dag_runs, trading_dates, strict=True):
        assert run.conf == {"ignore_window": True}
        pointer = scrape_pointer(api, run.dag_run_id)
        assert (pointer["trading_date"], pointer["complete"]) == (day.isoformat(), True)
    assert {d: rows_on(warehouse, d) for d in trading_dates} == dict.fromkeys(trading_dates, ROWS)


def test_no_dag_file_has_an_import_error(api):
    """The Import errors banner of the UI is empty."""
    errors = ImportErrorApi(api).get_import_errors()
    assert errors.total_entries == 0, [(e.filename, e.stack_trace) for e in errors.import_errors]
