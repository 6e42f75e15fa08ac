"""A hostile web, for real: each fault of the demo sites' fault switch is a site of its own,
shaped like equities (5 pages x 20 rows), whose good rows of the trading date are already
loaded. Each test runs the site's DAG with dag.test() and shows the outcome a user sees: exact
rows, or the previous partition untouched and a message naming the cause. The fault sites
reach the python demo server directly (connection DIRECT_CONN), not through nginx: its
misbehaviours arrive exactly as it sends them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
import yaml
from test_quality import output, xcom
from test_quality import task_states as states

from offpeak.naming import scrape_dag_file
from support import REPO
from support.dagsync import equities_variants, scrape_dags
from support.services import DIRECT_CONN

pytestmark = pytest.mark.integration
DAY = date(2026, 3, 3)  # a Tuesday, a London trading day
REGION = "europe"
LOOSE = {"max_error_count": 2, "max_http_errors": 3}  # a site that tolerates a few errors

# fault -> the site's quality/politeness overrides
FAULT_SITES = {
    # A page cut short in transfer is retried, then given up (an ERROR line of Scrapy's).
    "truncated": {"quality": LOOSE},
    "last_page_500": {"quality": LOOSE},
    "offsite_next": {},
    "offsite_redirect": {},
    "malformed_keys": {},
    "latin1_as_utf8": {},
    "utf8_as_latin1": {},
    "retry_after": {},
    "retry_after_date": {},
    "retry_after_long": {},
    "reset": {},
    "robots": {},
    "redirect_loop": {},
    "huge": {},
    "flaky_503": {"quality": {"max_http_errors": 10}},
    "flaky_reset": {"quality": {"max_error_count": 0}},
    "slow": {},
    # The retry_after route again, for a site whose cap (1 s) is below the 2 s it asks for.
    "retry_after_capped": {
        "route": "retry_after",
        "politeness": {"max_retry_after_seconds": 1},
        "dag": {"retry_delay_seconds": 1},
    },
}


def site_name(fault: str) -> str:
    return f"fault_{fault}"


@pytest.fixture(scope="module")
def fault_config(tmp_path_factory):
    """A config copy with one site per fault (region europe only), read by the runs."""
    equities = yaml.safe_load((REPO / "include/config/sites/equities.yaml").read_text())
    sites = {}
    for fault, overrides in FAULT_SITES.items():
        data = {"regions": [REGION], "base_url_conn_id": DIRECT_CONN}
        route = overrides.pop("route", fault)
        data["start_urls"] = [f"/faults/{route}/equities/{{region}}/{{trading_date}}/quotes?page=1"]
        for section, values in overrides.items():
            data[section] = {**equities.get(section, {}), **values}
        sites[site_name(fault)] = data
    return equities_variants(tmp_path_factory.mktemp("faults") / "config", sites)


@pytest.fixture(scope="module")
def fault_dags(fault_config, airflow_db):
    """The fault sites' DAGs, built by the scrape DAG files from the fault config (which the runs
    read too, so it stays set while the module's tests run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFPEAK_CONFIG_DIR", str(fault_config))
        yield scrape_dags()


@pytest.fixture(scope="module")
def good_feed(fault_config, direct_url, tmp_path_factory):
    """The equities pages of DAY crawled from the plain (fault-free) route: the good rows."""
    from offpeak.config import get_site
    from offpeak.crawl.operator import ScrapeOperator
    from offpeak.crawl.runner import CrawlRequest
    from offpeak.partition import Partition

    shipped = REPO / "include/config"
    site, _ = get_site("equities", shipped)
    work = tmp_path_factory.mktemp("good")
    op = ScrapeOperator(task_id="scrape", site="equities", region=REGION)
    feed = work / "items.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFPEAK_CONFIG_DIR", str(shipped))  # the crawl reads the shipped equities
        request = CrawlRequest(site, Partition(site.name, REGION, DAY, "good"), direct_url)
        rc = op.run_crawl(request, feed, work / "stats.json", str(work))
    assert rc == 0 and len(feed.read_text().splitlines()) == 100
    return feed


@pytest.fixture
def fault_site(fault_config, fault_dags, good_feed, pg, warehouse, session_env, monkeypatch):
    """``run(fault)``: load the good rows of DAY into the fault site's table, then run its DAG;
    returns (dag run, the partition before, the partition after)."""
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(fault_config))
    session_env["server"].reset_faults()

    def run(fault: str, retries: int = 0):
        import psycopg
        from airflow.sdk import ObjectStoragePath

        from offpeak.config import get_site
        from offpeak.partition import Partition
        from offpeak.pipeline.transform import transform_file
        from offpeak.warehouse.load import CleanFile, load_partition
        from offpeak.warehouse.schema import ensure_schema

        name = site_name(fault)
        with psycopg.connect(pg.uri("warehouse")) as conn:
            ensure_schema(conn)
        warehouse.execute(f"DROP TABLE IF EXISTS scraped.{name}")
        warehouse.execute("DELETE FROM scraped.load_audit WHERE site = %s", (name,))
        site, _ = get_site(name)
        work = good_feed.parent / name
        work.mkdir(exist_ok=True)
        paths = [ObjectStoragePath((work / f).as_uri()) for f in ("c.csv", "r.jsonl")]
        good = transform_file(site, ObjectStoragePath(good_feed.as_uri()), *paths)
        with psycopg.connect(pg.uri("warehouse")) as conn:
            clean = CleanFile(paths[0], good["clean"], good["rejected"])
            part = Partition(name, REGION, DAY, "good")
            load_partition(conn, site, part, clean, dag_id="good")
        before = partition(warehouse, name)
        assert len(before) == 90
        dag = fault_dags.get_dag(f"scrape__{name}__{REGION}")
        for task in dag.tasks:
            monkeypatch.setattr(task, "retries", retries)
        result = dag.test(run_conf={"trading_date": DAY.isoformat(), "ignore_window": True})
        return result, before, partition(warehouse, name)

    return run


def partition(warehouse, table: str) -> list[tuple]:
    """The partition's rows, without loaded_at and run_id (a rewrite of equal values)."""
    return warehouse.execute(
        f"SELECT symbol, name, last_price, change, change_pct, volume, listed_on, source_url "
        f"FROM scraped.{table} WHERE region = %s AND trading_date = %s ORDER BY symbol",
        (REGION, DAY),
    ).fetchall()


def last_audit(warehouse, fault: str) -> tuple:
    return warehouse.execute(
        "SELECT run_id, rows_deleted, complete FROM scraped.load_audit WHERE site = %s "
        "ORDER BY id DESC LIMIT 1",
        (site_name(fault),),
    ).fetchone()


def dead_letters(pg, run) -> list[dict]:
    uri = xcom(pg, run, "scrape")["dead_letters_uri"]
    text = Path(uri.removeprefix("file://")).read_text()
    return [json.loads(line) for line in text.splitlines()]


def assert_partial_and_kept(pg, warehouse, fault, run, before, after, cause: str) -> dict:
    """The run is green, its crawl partial for ``cause``, and the partition exactly as it
    was: the pages it did read had the same values, and nothing was deleted."""
    assert run.state == "success", states(run)
    scraped = xcom(pg, run, "scrape")
    assert scraped["complete"] is False
    assert cause in scraped["incomplete"]
    assert after == before
    run_id, deleted, complete = last_audit(warehouse, fault)
    assert (run_id, deleted, complete) == (run.run_id, 0, False)
    return scraped


# ------------------------------------------------------------------ lost pages never delete


def test_a_page_cut_off_mid_table_is_partial_and_deletes_nothing(
    fault_site, pg, warehouse, capfd, caplog
):
    """Page 3 announces its length, then the connection closes mid-row: Scrapy fails the
    transfer (DOWNLOAD_FAIL_ON_DATALOSS), retries it twice, and it is a dead letter."""
    run, before, after = fault_site("truncated")
    scraped = assert_partial_and_kept(pg, warehouse, "truncated", run, before, after, "truncated")
    assert scraped["items"] == 40  # pages 1-2; none of page 3's rows
    (letter,) = dead_letters(pg, run)
    assert (letter["cause"], letter["retries"]) == ("truncated", 2)
    assert (
        "/faults/truncated/equities/europe/2026-03-03/quotes?page=3 was cut short after 2 "
        "retries: the connection closed after " in letter["reason"]
    )
    assert "bytes its Content-Length announced; none of its rows are stored" in letter["reason"]
    text = output(capfd, caplog)
    assert "partial, so its load will add and update rows but delete none" in text
    assert "1 pages were cut short in transfer (the connection closed before the end" in text


def test_a_last_page_that_fails_is_partial_and_keeps_its_rows(
    fault_site, pg, warehouse, capfd, caplog
):
    run, before, after = fault_site("last_page_500")
    assert_partial_and_kept(pg, warehouse, "last_page_500", run, before, after, "http_error")
    (letter,) = dead_letters(pg, run)
    assert letter["status"] == 500 and letter["retries"] == 2
    assert letter["reason"].endswith("/equities/europe/2026-03-03/quotes?page=5 after 2 retries")
    assert "dead letter: HTTP 500 from http://127.0.0.1:" in output(capfd, caplog)


def test_rejected_records_keep_their_keys_earlier_rows(fault_site, pg, warehouse):
    run, before, after = fault_site("malformed_keys")
    assert run.state == "success", states(run)
    assert xcom(pg, run, "scrape")["complete"] is True
    cleaned = xcom(pg, run, "transform")
    assert cleaned["rejected_keys"] >= 8
    assert after == before  # the 8 keys rejected today keep yesterday's good values
    assert last_audit(warehouse, "malformed_keys")[1:] == (0, True)


# ------------------------------------------------------------------------- stay on the site


@pytest.mark.parametrize("fault", ["offsite_next", "offsite_redirect"])
def test_links_and_redirects_to_another_host_are_refused(
    fault_site, pg, warehouse, session_env, fault
):
    run, before, after = fault_site(fault)
    assert_partial_and_kept(pg, warehouse, fault, run, before, after, "offsite")
    (letter,) = dead_letters(pg, run)
    how = "a redirect from" if fault == "offsite_redirect" else "a link"
    assert letter["reason"].startswith(f"off-site request refused: {how} ")
    assert "to host 'localhost'" in letter["reason"]
    assert "the site's hosts are ['127.0.0.1']" in letter["reason"]
    # Nothing was fetched from the other host: no foreign rows, no request for page 3.
    counts = session_env["server"].fault_counts
    assert not [k for k in counts if "page=3" in k]
    assert all(row[-1].startswith("http://127.0.0.1:") for row in after)


# ------------------------------------------------------------------------------ charsets


def test_latin1_bytes_declared_utf8_are_refused_not_stored_garbled(
    fault_site, pg, warehouse, capfd, caplog
):
    run, before, after = fault_site("latin1_as_utf8")
    assert run.state == "failed"
    assert states(run)["scrape"] == "failed"
    assert after == before
    text = output(capfd, caplog)
    assert "scraped 0 items, fewer than min 10" in text
    assert "quotes?page=1 are not valid utf-8, the charset its Content-Type header" in text
    assert "declares: the page is not stored rather than stored garbled" in text


def test_utf8_bytes_declared_latin1_are_read_as_utf8(fault_site, pg, warehouse, capfd, caplog):
    run, before, after = fault_site("utf8_as_latin1")
    assert run.state == "success", states(run)
    assert xcom(pg, run, "scrape")["complete"] is True
    assert after == before  # the same names as the correctly labelled pages: no mojibake
    names = [row[1] for row in after]
    assert not [n for n in names if "\ufffd" in n or "Ã" in n]
    assert "declares cp1252 (Content-Type header) but its bytes are valid UTF-8" in output(
        capfd, caplog
    )


# ------------------------------------------------------------------------- Retry-After


# An HTTP-date has whole seconds: "now + 2 s" written as a date is 1 to 2 s away.
@pytest.mark.parametrize(("fault", "least"), [("retry_after", 1.9), ("retry_after_date", 0.9)])
def test_retry_after_is_honoured_and_is_not_an_http_error(
    fault_site, pg, warehouse, session_env, fault, least
):
    run, before, after = fault_site(fault)
    assert run.state == "success", states(run)
    scraped = xcom(pg, run, "scrape")
    assert scraped["complete"] is True and scraped["checks"]["http_errors"] == "passed"
    assert after == before
    times = session_env["server"].fault_times
    for page in (2, 3, 4, 5):
        (key,) = [k for k in times if k.endswith(f"page={page}")]
        first, second = times[key]
        assert second - first >= least, f"page {page} was retried after {second - first:.2f} s"


def test_a_retry_after_above_the_cap_fails_with_the_time_asked(
    fault_site, pg, warehouse, capfd, caplog
):
    run, before, after = fault_site("retry_after_long")
    assert run.state == "failed"
    assert after == before
    text = output(capfd, caplog)
    assert (
        "site 'fault_retry_after_long' region 'europe' 2026-03-03: the site asked to wait "
        "3,600 s (Retry-After), above politeness.max_retry_after_seconds 60"
    ) in text
    assert "answered 429 with Retry-After 3600" in text


def test_the_retry_after_a_wait_above_the_cap_starts_no_earlier_than_asked(
    fault_site, pg, warehouse, session_env, capfd, caplog
):
    """The site asks for 2 s on each page's first request, the cap is 1 s: the first try ends
    the crawl at page 2, waits (deferred) until the site's time, then fails; the retry asks
    for page 2 no earlier than the site allowed (and is stopped the same way at page 3)."""
    run, before, after = fault_site("retry_after_capped", retries=1)
    assert run.state == "failed", states(run)
    (scrape,) = [ti for ti in run.get_task_instances() if ti.task_id == "scrape"]
    assert scrape.try_number == 2
    assert after == before
    times = session_env["server"].fault_times
    (key,) = [k for k in times if "/retry_after/" in k and k.endswith("page=2")]
    first, second = times[key][:2]
    assert second - first >= 1.9, f"the retry asked page 2 again after {second - first:.2f} s"
    text = output(capfd, caplog)
    assert (
        "the site asked to wait 2 s (Retry-After), above politeness.max_retry_after_seconds 1"
        in text
    )
    assert "when the site allows, and the task's retry follows" in text


# ------------------------------------------------------------ failures that name their cause


def test_a_connection_reset_on_every_try_names_the_page_and_retries(
    fault_site, pg, warehouse, capfd, caplog
):
    run, before, after = fault_site("reset")
    assert run.state == "failed"
    assert after == before
    text = output(capfd, caplog)
    assert ("connection reset by peer before a whole response on http://127.0.0.1:") in text
    assert "/faults/reset/equities/europe/2026-03-03/quotes?page=3 after 2 retries" in text


def test_robots_txt_disallowing_the_path_is_named(fault_site, pg, warehouse, capfd, caplog):
    run, before, after = fault_site("robots")
    assert run.state == "failed"
    assert after == before
    text = output(capfd, caplog)
    assert "scraped 0 items, fewer than min 10" in text
    assert "robots.txt disallows /faults/robots/equities/europe/2026-03-03/quotes" in text


def test_a_redirect_loop_is_named(fault_site, pg, warehouse):
    run, before, after = fault_site("redirect_loop")
    assert_partial_and_kept(pg, warehouse, "redirect_loop", run, before, after, "redirect_loop")
    (letter,) = dead_letters(pg, run)
    assert letter["reason"].startswith("redirect loop at http://127.0.0.1:")
    assert letter["reason"].endswith(
        "quotes?page=2: gave up after 20 redirects (REDIRECT_MAX_TIMES)"
    )


def test_a_response_above_the_size_limit_names_its_size(fault_site, pg, warehouse):
    run, before, after = fault_site("huge")
    assert_partial_and_kept(pg, warehouse, "huge", run, before, after, "too_large")
    (letter,) = dead_letters(pg, run)
    assert letter["reason"].startswith("response of 62,914,560 bytes from http://127.0.0.1:")
    assert letter["reason"].endswith("exceeds politeness.download_maxsize 10 MiB")


# ---------------------------------------------------------------------- what always held


@pytest.mark.parametrize("fault", ["flaky_503", "flaky_reset"])
def test_transient_errors_are_retried_and_load_exact_rows(fault_site, pg, warehouse, fault):
    run, before, after = fault_site(fault)
    assert run.state == "success", states(run)
    assert xcom(pg, run, "scrape")["complete"] is True
    assert after == before
    assert last_audit(warehouse, fault)[1:] == (0, True)


# --------------------------------------------------------------------------------- no orphans

RUN_ONE = """
import sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).get_dag(sys.argv[2])
dag.test(run_conf={"trading_date": sys.argv[3], "ignore_window": True})
"""


def crawls_of(site: str) -> list[int]:
    """Pids of running `scrapy crawl` processes of ``site``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"scrapy" in argv and f"site={site}".encode() in argv:
            found.append(int(proc.name))
    return found


def kill_when(task: subprocess.Popen, site: str, ready, what: str, timeout: float = 120):
    """SIGKILL ``task`` (a run in a process of its own) once ``ready()`` holds, as the OOM
    killer would; fail if the run ends first, or if its crawl of ``site`` outlives it by 3 s
    (far less than the rest of a slow crawl would take)."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert task.poll() is None, f"the run ended before {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)
        os.kill(task.pid, signal.SIGKILL)
        task.wait(timeout=10)
        deadline = time.monotonic() + 3
        while crawls_of(site) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert crawls_of(site) == [], "the crawl outlived its task"
    finally:
        if task.poll() is None:
            task.kill()
        for pid in crawls_of(site):
            os.kill(pid, signal.SIGKILL)


def written_since(path: Path, moment: float) -> bool:
    try:  # other processes come and go in the temp folder
        return path.is_file() and path.stat().st_mtime >= moment
    except OSError:
        return False


def test_a_killed_task_takes_its_crawl_with_it(fault_config, fault_dags, session_env, tmp_path):
    """The task process (here a dag.test() run in a process of its own) is SIGKILLed while
    its crawl of a slow site (2 s a page) is under way: the crawl is gone within seconds, no
    feed was published or left outside the data root's temp area, and the next crawl clears
    the dead one's folder."""
    from offpeak.pipeline import storage

    site = site_name("slow")
    env = {**os.environ, "OFFPEAK_CONFIG_DIR": str(fault_config)}
    started = time.time()
    task = subprocess.Popen(
        [sys.executable, "-c", RUN_ONE, str(REPO / "dags" / scrape_dag_file(site)),
         f"scrape__{site}__{REGION}", "2026-03-04"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seen: list[float] = []

    def a_page_fetched() -> bool:  # a page fetched, a partial feed on disk, 4 pages (8 s) to go
        if not seen and crawls_of(site):
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= 2.5

    kill_when(task, site, a_page_fetched, "its crawl fetched a page")
    root = Path(session_env["env"]["OFFPEAK_DATA_ROOT"].removeprefix("file://"))
    assert not (root / "raw" / f"site={site}").exists()  # nothing published
    temp = Path(os.environ.get("TMPDIR", "/tmp"))
    mine = (f"crawl-{task.pid}-", "offpeak-crawl-", site)  # this crawl's files, old or new
    strays = [
        p for p in temp.rglob("*")
        if any(m in str(p) for m in mine) and root not in p.parents and written_since(p, started)
    ]  # fmt: skip
    assert strays == []
    left = list((root / "tmp").glob(f"crawl-{task.pid}-*"))
    assert left, "the killed crawl's folder should be in the temp area until the next crawl"
    with storage.crawl_workdir():
        assert not [p for p in left if p.exists()]
