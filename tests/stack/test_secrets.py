"""A site's API key, after a real scheduler run, is nowhere: files, warehouse, metadata DB, logs."""

from __future__ import annotations

import json
from pathlib import Path

from support.secrets import hits, metadata_hits

DAG_ID = "scrape__funds__oceania"  # the stack's funds start URL carries the key (api_key=...)


def test_the_sites_api_key_is_never_stored_or_logged(stack):
    key = json.loads(stack.env["AIRFLOW_CONN_SITE_FUNDS"])["password"]
    assert hits(f"GET /?api_key={key.replace('/', '%2f')}", key)  # the scan can see it
    status, body = stack.rest("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
    assert status == 200, body
    status, body = stack.rest(
        "POST", f"/dags/{DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"trading_date": "2026-10-08", "ignore_window": True}},
    )  # fmt: skip
    assert status == 200, body
    run_id = body["dag_run_id"]

    def finished():
        _, run = stack.rest("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        return run["state"] if run.get("state") in ("success", "failed") else None

    assert stack.wait(finished, 180, f"{DAG_ID} {run_id} to finish", every=2) == "success"
    # The key was used: the crawl reached the keyed start URL and loaded the funds.
    scraped = stack.xcom(DAG_ID, run_id, "scrape")
    assert scraped["items"] == 30 and scraped["complete"] is True

    found: dict[str, list[str]] = {}
    # Files under the data root: raw feed, dead letters, clean CSV, rejects, rejected keys.
    root = Path(stack.env["OFFPEAK_DATA_ROOT"].removeprefix("file://"))
    files = [p for p in root.rglob("*") if p.is_file() and "site=funds" in str(p)]
    assert any(p.suffix == ".jsonl" for p in files) and any(p.suffix == ".csv" for p in files)
    for path in files:
        if bad := hits(path.read_text(errors="replace"), key):
            found[str(path)] = bad
    # The warehouse: the site's table (source_url) and the load audit, every column as text.
    import psycopg

    with psycopg.connect(stack.pg.uri(stack.WAREHOUSE)) as conn:
        for table in ("scraped.funds", "scraped.load_audit"):
            rows = conn.execute(f"SELECT t::text FROM {table} t").fetchall()
            assert rows
            if bad := hits("\n".join(r[0] for r in rows), key):
                found[table] = bad
        urls = conn.execute("SELECT DISTINCT source_url FROM scraped.funds").fetchall()
    assert urls and all("api_key" not in u for (u,) in urls), urls
    # The metadata DB, every table: XCom, rendered templates, run conf, task instances ...
    found |= metadata_hits(stack.query, key)
    # Every component's log (api-server, scheduler, dag-processor, triggerer) and task logs.
    log_dirs = [stack.procs.logs, Path(stack.env["AIRFLOW_HOME"]) / "logs"]
    logs = [p for d in log_dirs for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "scheduler.log" for p in logs)
    for path in logs:
        if bad := hits(path.read_text(errors="replace"), key):
            found[str(path)] = bad
    assert found == {}
