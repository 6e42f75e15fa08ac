"""The pipeline's metrics as they leave Airflow: real `airflow dags test` runs with Airflow's
[metrics] StatsD pointed at a UDP socket of the test, and every packet read back and checked
against what the run did (pages the demo site served, rows in the warehouse, load_audit, XCom)
and against the statsd-exporter mapping."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date

import pytest
import yaml
from test_airflow_cli import CRAWL_NOW, Run, _start, dag_run

from offpeak import metrics
from offpeak.naming import scrape_dag_id
from support import REPO
from support.dagsync import register_dags
from support.queries import load_audit, own_schema
from support.services import load_demo_server
from support.statsd import Mapping, StatsdReceiver

DAY, REGION = date(2026, 11, 25), "europe"  # a Wednesday; London midnight is UTC midnight
CLEAN, FAULTY = "equities", "equities_500"
DEMO = load_demo_server()
PAGES, ROWS_PER_PAGE = DEMO.EQUITY_PAGES, DEMO.EQUITY_ROWS_PER_PAGE
# equities with its last page answering 500 (the demo sites' last_page_500 fault), allowed the
# 3 errors of that page's 3 tries, and a price range no price meets: the crawl is partial, the
# transform goes through, the load fails its quality check.
FAULTY_OVERRIDES = {
    "regions": [REGION],
    "start_urls": ["/faults/last_page_500/equities/{region}/{trading_date}/quotes?page=1"],
    "quality": {"max_error_count": 2, "max_http_errors": 3,
                "ranges": {"last_price": {"min": 1_000_000_000}}},
}  # fmt: skip
RUNS = [Run(scrape_dag_id(site, REGION), DAY.isoformat(), CRAWL_NOW) for site in (CLEAN, FAULTY)]
TIMEOUT = 300  # seconds for one run


def name(metric: metrics.Metric, site: str, value: object = None) -> str:
    return f"airflow.{metric.format(site, REGION, value)}"


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """The shipped equities site and its faulty twin, and no other site (each `airflow dags
    test` parses every scrape DAG)."""
    config = tmp_path_factory.mktemp("metrics") / "config"
    shutil.copytree(REPO / "include/config", config)
    equities = yaml.safe_load((config / "sites/equities.yaml").read_text())
    for shipped in (config / "sites").glob("*.yaml"):
        if shipped.stem != CLEAN:
            shipped.unlink()
    faulty = {**equities, **FAULTY_OVERRIDES}
    faulty["quality"] = {**equities["quality"], **FAULTY_OVERRIDES["quality"]}
    (config / "sites" / f"{FAULTY}.yaml").write_text(yaml.safe_dump(faulty))
    return config


@pytest.fixture(scope="module")
def metrics_schema(pg):
    """A warehouse schema of this module's own, dropped at the end."""
    with own_schema(pg, "t_metrics") as name:
        yield name


@pytest.fixture(scope="module")
def received(airflow_db, config, metrics_schema, tmp_path_factory) -> dict:
    """Both runs at once, each in an `airflow dags test` process whose Airflow sends its StatsD
    to a socket of its own; the sockets are read until the processes have exited, then once
    more, so every packet a run sent is in: ``{dag_id: (receiver, exit code, output)}``."""
    logs = tmp_path_factory.mktemp("metrics-runs")
    env = {
        **os.environ,
        "OFFPEAK_CONFIG_DIR": str(config),
        "OFFPEAK_WAREHOUSE_SCHEMA": metrics_schema,
    }
    register_dags(env)  # the processes below would race to register them
    started = {}
    for run in RUNS:
        receiver = StatsdReceiver()
        proc, log, _ = _start(run, {**env, **receiver.env()}, logs / f"{run.dag_id}.log")
        started[run.dag_id] = (proc, log, receiver)
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(proc.poll() is None for proc, _, _ in started.values()):
            for _, _, receiver in started.values():
                receiver.drain(wait=0.1)
            if time.monotonic() > deadline:
                break
    finally:
        for proc, _, _ in started.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result = {}
    for dag_id, (proc, log, receiver) in started.items():
        receiver.drain()
        receiver.close()
        result[dag_id] = (receiver, proc.returncode, log.read_text())
    return result


def run_of(dag_id: str) -> Run:
    return next(r for r in RUNS if r.dag_id == dag_id)


def scrape_xcom(pg, row: dict, dag_id: str) -> dict:
    import psycopg

    with psycopg.connect(pg.uri("airflow")) as conn:
        value = conn.execute(
            "SELECT value::text FROM xcom WHERE dag_id = %s AND run_id = %s "
            "AND task_id = 'scrape' AND key = 'return_value'",
            (dag_id, row["run_id"]),
        ).fetchone()
    return json.loads(value[0])


def values(receiver: StatsdReceiver, metric_name: str, kind: str = "c") -> list[float]:
    lines = receiver.named(metric_name)
    assert all(line.type == kind for line in lines), lines
    return [line.value for line in lines]


def test_a_clean_run_sends_what_the_site_served_and_the_warehouse_got(
    received, pg, warehouse, metrics_schema
):
    dag_id = scrape_dag_id(CLEAN, REGION)
    receiver, code, output = received[dag_id]
    row = dag_run(pg, run_of(dag_id))
    assert row["state"] == "success", f"exit {code}:\n{output[-4000:]}"
    [audit] = load_audit(warehouse, CLEAN, REGION, DAY, schema=metrics_schema)
    loaded = warehouse.execute(
        f"SELECT count(*) FROM {metrics_schema}.{CLEAN} WHERE region = %s AND trading_date = %s",
        (REGION, DAY),
    ).fetchone()[0]
    scraped = scrape_xcom(pg, row, dag_id)

    def sent(metric: metrics.Metric, value: object = None) -> list[float]:
        return values(receiver, name(metric, CLEAN, value))

    # The crawl: every page of the demo site once, each of its rows an item.
    assert sent(metrics.CRAWL_PAGES) == [PAGES]
    assert sent(metrics.CRAWL_ITEMS) == [PAGES * ROWS_PER_PAGE] == [scraped["items"]]
    assert sent(metrics.CRAWL_RETRIES) == [0]
    assert sent(metrics.CRAWL_BYTES) == [scraped["stats"]["response_bytes"]]
    assert scraped["stats"]["response_bytes"] > 0
    prefix = f"airflow.offpeak.crawl.http_errors.{CLEAN}."
    assert [line for line in receiver.lines if line.name.startswith(prefix)] == []
    # The crawl's wall time, a timing in ms: at least Scrapy's own elapsed time.
    [ms] = values(receiver, name(metrics.CRAWL_DURATION, CLEAN), kind="ms")
    assert scraped["stats"]["elapsed_seconds"] <= ms / 1000 < TIMEOUT
    assert sent(metrics.CRAWL_RUNS, "complete") == [1]
    # The transform: the rows read and the demo site's 2 malformed rows a page rejected.
    assert sent(metrics.TRANSFORM_RECORDS) == [audit["rows_in_file"] + audit["rows_rejected"]]
    assert sent(metrics.TRANSFORM_REJECTED) == [audit["rows_rejected"]] == [2 * PAGES]
    assert sent(metrics.TRANSFORM_RUNS, "succeeded") == [1]
    # The load: a new partition, every row inserted, as the warehouse and its audit say.
    assert sent(metrics.LOAD_ROWS, "inserted") == [loaded] == [audit["rows_inserted"]]
    assert loaded == PAGES * (ROWS_PER_PAGE - 2)
    for change in ("updated", "deleted", "unchanged"):
        assert sent(metrics.LOAD_ROWS, change) == [0], change
    assert sent(metrics.LOAD_RUNS, "complete") == [1]
    not_sent = [
        (metrics.CRAWL_RUNS, "failed"), (metrics.TRANSFORM_RUNS, "failed"),
        (metrics.LOAD_RUNS, "failed"), (metrics.LOAD_RUNS, "partial"),
    ]  # fmt: skip
    for metric, outcome in not_sent:
        assert sent(metric, outcome) == [], outcome


def test_a_faulty_run_sends_its_http_errors_retries_and_the_failed_load(
    received, pg, warehouse, metrics_schema
):
    dag_id = scrape_dag_id(FAULTY, REGION)
    receiver, code, output = received[dag_id]
    row = dag_run(pg, run_of(dag_id))
    assert row["state"] == "failed", f"exit {code}:\n{output[-4000:]}"
    assert f"quality check range failed for site {FAULTY} region {REGION} {DAY}" in output

    def sent(metric: metrics.Metric, value: object = None) -> list[float]:
        return values(receiver, name(metric, FAULTY, value))

    # The last page answered 500 to its first try and its 2 retries: every page was fetched
    # (the last one's answer an error), 3 errors, 2 retries.
    assert sent(metrics.CRAWL_HTTP_ERRORS, 500) == [3]
    assert sent(metrics.CRAWL_RETRIES) == [2]
    assert sent(metrics.CRAWL_PAGES) == [PAGES]
    assert sent(metrics.CRAWL_ITEMS) == [(PAGES - 1) * ROWS_PER_PAGE]
    assert sent(metrics.CRAWL_RUNS, "partial") == [1]
    assert sent(metrics.TRANSFORM_REJECTED) == [2 * (PAGES - 1)]
    assert sent(metrics.TRANSFORM_RUNS, "succeeded") == [1]
    # The load failed its range check, once (a failed check is not retried), and changed
    # nothing: no row counts, no audit row.
    assert sent(metrics.LOAD_RUNS, "failed") == [1]
    assert [line for line in receiver.lines if ".load.rows." in line.name] == []
    assert load_audit(warehouse, FAULTY, REGION, DAY, schema=metrics_schema) == []
    # Airflow counts the failed task too (ti.finish), and the mapping labels it.
    finished = f"airflow.ti.finish.{dag_id}.load.failed"
    assert values(receiver, finished) == [1]
    mapped = Mapping.load().map(finished, "c")
    assert (mapped.name, mapped.labels) == (
        "airflow_ti_finish_total",
        {"dag_id": dag_id, "task_id": "load", "state": "failed"},
    )


def test_every_name_a_run_sent_maps_and_carries_no_url(received):
    """What reached the socket is what statsd-exporter will read: each of our names maps to a
    labelled Prometheus metric, and each is made of plain words only."""
    mapping = Mapping.load()
    families = set()
    for dag_id, (receiver, _, _) in received.items():
        site = dag_id.split("__")[1]
        for line in receiver.lines:
            assert "://" not in line.name and "?" not in line.name, line
            if not line.name.startswith("airflow.offpeak."):
                continue
            mapped = mapping.map(line.name, line.type)
            assert mapped is not None, line
            assert (mapped.labels["site"], mapped.labels["region"]) == (site, REGION), line
            families.add(mapped.name)
    # The two runs sent every metric but throttling (no site asked them to wait).
    assert families == {m.prometheus for m in metrics.METRICS} - {"offpeak_crawl_throttled_total"}


def test_a_metric_that_cannot_be_sent_is_logged_and_the_task_goes_on(tmp_path):
    """A bad name part (here a URL with a key) is refused and logged without the URL, never
    raised; the good metrics around it still go out."""
    receiver = StatsdReceiver()
    code = (
        "from offpeak import metrics\n"
        "metrics.crawl_finished('https://x.example/?key=s3cret', 'europe', 'failed')\n"
        "metrics.crawl_finished('equities', 'europe', 'complete')\n"
        "print('the task went on')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **receiver.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    receiver.drain(wait=5)
    receiver.close()
    assert done.returncode == 0, done.stderr
    assert "the task went on" in done.stdout
    logged = done.stdout + done.stderr
    assert "Metrics of site (not shown) region europe not sent" in logged
    assert "cannot be part of a metric name" in logged
    assert "s3cret" not in logged
    ours = [line.name for line in receiver.lines if ".offpeak." in line.name]
    assert ours == ["airflow.offpeak.crawl.runs.equities.europe.complete"]
    assert all("s3cret" not in line.name for line in receiver.lines)
