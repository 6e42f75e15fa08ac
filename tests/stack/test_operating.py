"""Operating the product on a running Airflow (scheduler, dag-processor, triggerer, api-server):
typed params over REST, per-site pools, failure and deadline alerts to a webhook, auto-pause
after failed runs, and the warehouse tables as assets."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from support.stack import hhmmss

FAILING = "scrape__funds__oceania"  # funds has no retries in the stack: a failure is final


def slack_facts(message: dict) -> dict[str, str]:
    """The ``*Name*\nvalue`` fields of a Slack message's second block, as a dict."""
    pairs = (f["text"].split("\n", 1) for f in message["blocks"][1]["fields"])
    return {name.strip("*"): value for name, value in pairs}


# ---------------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"max_pages": "many"}, "max_pages"),
        ({"max_pages": 0}, "max_pages"),
        ({"trading_date": "2026-13-45"}, "trading_date"),
        ({"ignore_window": "yes"}, "ignore_window"),
        ({"start_urls": ["/not/a/start/url"]}, "start_urls"),
    ],
)
def test_a_rest_trigger_with_invalid_conf_is_rejected_naming_the_field(stack, conf, field):
    status, body = stack.rest(
        "POST", "/dags/scrape__equities__americas/dagRuns", {"logical_date": None, "conf": conf}
    )
    assert status == 400, body
    assert field in body["detail"], body["detail"]


def test_every_dag_offers_typed_params_with_descriptions(stack):
    status, body = stack.rest("GET", "/dags/scrape__fx_rates__europe/details")
    assert status == 200
    params = body["params"]
    assert set(params) == {
        "trading_date", "ignore_window", "max_pages", "start_urls", "dry_run", "ignore_breaker",
    }  # fmt: skip
    for name, param in params.items():
        assert param["description"], name
    assert params["max_pages"]["schema"]["type"] == ["null", "integer"]
    assert params["start_urls"]["schema"]["items"]["enum"] == ["/api/fx/{region}/{trading_date}"]
    status, body = stack.rest("GET", "/dags/rollup__europe/details")
    assert set(body["params"]) == {"trading_date"}


# ----------------------------------------------------------------------------------- pools


def test_a_site_never_runs_more_crawls_than_its_pool_allows(stack):
    """Pools exist per site with the configured size; with equities set to 1 crawl at once,
    two regions' runs of equities triggered together crawl one after the other."""
    pools = {
        r[0]: r[1:] for r in stack.query("SELECT pool, slots, include_deferred FROM slot_pool")
    }
    assert pools["site_equities"] == (2, False)
    assert pools["site_fx_rates"] == (2, False) and pools["site_funds"] == (2, False)

    stack.edit_yaml(
        "sites/equities.yaml", lambda d: d["politeness"].update(max_concurrent_crawls=1)
    )
    stack.run_module("offpeak.pools")
    assert stack.query("SELECT slots FROM slot_pool WHERE pool = 'site_equities'") == [(1,)]
    try:
        runs = {}
        for dag_id in ("scrape__equities__asia_pacific", "scrape__equities__india"):
            stack.set_paused(dag_id, False)
            runs[dag_id] = stack.trigger(
                dag_id, {"trading_date": "2026-08-04", "ignore_window": True}
            )
        for dag_id, run_id in runs.items():
            assert stack.wait_run(dag_id, run_id) == "success"
    finally:
        stack.edit_yaml(
            "sites/equities.yaml", lambda d: d["politeness"].update(max_concurrent_crawls=2)
        )
        stack.run_module("offpeak.pools")
    spans = stack.query(
        "SELECT dag_id, pool, start_date, end_date FROM task_instance "
        "WHERE task_id = 'scrape' AND run_id = ANY(%s) ORDER BY start_date",
        list(runs.values()),
    )
    assert [s[1] for s in spans] == ["site_equities", "site_equities"]
    (_, _, _, first_end), (_, _, second_start, _) = spans
    assert second_start >= first_end, f"the two crawls overlapped: {spans}"


# ------------------------------------------------------------------------------------ logs


def task_log(stack, dag_id: str, run_id: str, task_id: str) -> str:
    status, body = stack.rest(
        "GET", f"/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}/logs/1"
    )
    assert status == 200, body
    return "\n".join(e.get("event", "") for e in body["content"] if isinstance(e, dict))


def test_task_log_shows_the_crawl_and_masks_the_sites_api_key(stack):
    """The stack's funds connection has an API key (its password) that the start URL carries:
    the crawl works and the task log, as the UI shows it, never shows the key."""
    stack.set_paused(FAILING, False)
    run_id = stack.trigger(FAILING, {"trading_date": "2026-10-06", "ignore_window": True})
    assert stack.wait_run(FAILING, run_id) == "success"
    log = task_log(stack, FAILING, run_id, "scrape")
    # The start URL is logged as stored: without the parameter that carries the key.
    assert re.search(r"Start URL: http://\S+/\?page=1$", log, re.M) and "api_key=" not in log
    key = json.loads(stack.env["AIRFLOW_CONN_SITE_FUNDS"])["password"]
    assert key not in log and quote(key, safe="") not in log
    assert "finished (finished): " in log and "Crawl published" in log


# ---------------------------------------------------------------------------------- alerts


def test_final_failures_alert_the_webhook_and_pause_the_dag_after_three(stack, alerts):
    """Three runs for days the ASX is closed fail (funds has no retries here): each posts a
    Slack-compatible message with the run's facts, and the third pauses the DAG
    (dag.max_consecutive_failed_runs: 3)."""
    stack.set_paused(FAILING, False)
    days = ["2026-10-03", "2026-10-04", "2026-12-25"]
    try:
        for day in days:
            run_id = stack.trigger(FAILING, {"trading_date": day, "ignore_window": True})
            assert stack.wait_run(FAILING, run_id) == "failed"
        stack.wait(lambda: len(alerts.messages(f"{FAILING}.scrape failed")) >= 3, 60, "3 alerts")
        paused = stack.wait(
            lambda: stack.query("SELECT is_paused FROM dag WHERE dag_id = %s", FAILING)[0][0],
            60,
            f"{FAILING} to be paused after 3 failed runs",
        )
        assert paused is True
    finally:
        stack.set_paused(FAILING, False)
    message = alerts.messages(f"{FAILING}.scrape failed")[-1]
    assert message["text"] == f":red_circle: {FAILING}.scrape failed (try 1)"
    facts = slack_facts(message)
    assert facts["DAG"] == FAILING and facts["Task"] == "scrape"
    assert (facts["Site"], facts["Region"], facts["Trading date"]) == ("funds", "oceania", days[-1])
    assert facts["Try"] == "1"
    assert facts["Log"].startswith("<http://localhost:") and "/tasks/scrape" in facts["Log"]
    exception = message["blocks"][2]["text"]["text"]
    assert "NotATradingDay: 2026-12-25 is not a trading day of XASX" in exception
    # The webhook's URL is a secret: no task or component log shows it.
    log_dirs = [stack.procs.logs, Path(stack.env["AIRFLOW_HOME"]) / "logs"]
    logs = "".join(
        p.read_text(errors="replace") for d in log_dirs for p in d.rglob("*") if p.is_file()
    )
    assert "Alert posted to connection 'offpeak_alerts'" in logs
    assert "s3cretHookPath" not in logs


def test_a_run_not_finished_when_its_window_closes_raises_a_deadline_alert(stack, alerts):
    """India's window is made 20 s long: a run queued now (of a paused DAG, so it does not
    start) has not finished 20 s later, and its Deadline Alert posts to the webhook."""
    dag_id = "scrape__funds__india"
    opens = datetime.now(tz=UTC) + timedelta(hours=1)
    edited = time.time()
    stack.edit_regions(india=(opens, opens + timedelta(seconds=20)))
    try:
        # The run's deadline is the window's length, taken from the DAG it is created from.
        stack.wait_parsed([dag_id], since=edited, showing=hhmmss("Asia/Kolkata", opens))
        # The DAG stays paused: the run is queued and never starts.
        run_id = stack.trigger(dag_id, {"trading_date": "2026-08-05"})
        message = stack.wait(
            lambda: next(iter(alerts.messages(f"{dag_id} has not finished")), None),
            120,
            "the deadline alert",
            every=2,
        )
        _, run = stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        assert run["state"] == "queued"
    finally:
        stack.rest("DELETE", f"/dags/{dag_id}/dagRuns/{run_id}")
        window = stack.windows_open_at
        edited = time.time()
        stack.edit_regions(india=(window, window + timedelta(hours=1)))
        stack.wait_parsed([dag_id], since=edited, showing=hhmmss("Asia/Kolkata", window))
    facts = slack_facts(message)
    assert facts["Run"] == run_id and facts["Region"] == "india"
    assert facts["Trading date"] == "2026-08-05"
    assert facts["Window"].endswith("Asia/Kolkata")


# ----------------------------------------------------------------------------------- lineage


def test_loads_emit_asset_events_with_row_counts_and_rollups_consume_them(stack):
    """After the pool test's loads: the equities table's asset has events with the partition's
    row counts, produced by the site DAGs' load and read by the region rollups."""
    status, body = stack.rest("GET", "/assets?name_pattern=warehouse.scraped.equities")
    assert status == 200
    (asset,) = [a for a in body["assets"] if a["name"] == "warehouse.scraped.equities"]
    producers = {(t["dag_id"], t["task_id"]) for t in asset["producing_tasks"]}
    consumers = {(t["dag_id"], t["task_id"]) for t in asset["consuming_tasks"]}
    assert ("scrape__equities__india", "load") in producers
    assert ("rollup__india", "summarize") in consumers
    status, body = stack.rest("GET", f"/assets/events?asset_id={asset['id']}&limit=100")
    extras = [
        e["extra"] for e in body["asset_events"] if e["source_dag_id"] == "scrape__equities__india"
    ]
    assert {"region": "india", "trading_date": "2026-08-04"}.items() <= extras[-1].items()
    assert extras[-1]["partition_rows"] == 90 and extras[-1]["complete"] is True
