"""Sites rendered in a browser (issue 27): the demo's equities whose rows a script writes after
load (`/js/...`: the HTML itself has none) load exactly the rows of the plain equities pages,
rendered by Debian's chromium through scrapy-playwright; a page whose script never finishes
(`/js-hang/...`, page 3) is a dead letter and the crawl partial; a killed task leaves no
chromium behind; the preview shows the rendered rows; and a rendered site's proxy is used by
the browser too (Debian's tinyproxy)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date

import psutil
import pytest
from test_faults import RUN_ONE, kill_when
from test_pipeline import fetch, run_dag
from test_quality import xcom

from offpeak.naming import scrape_dag_file
from support import REPO
from support.dagsync import dags_of, equities_variants
from support.tinyproxy import Tinyproxy

pytestmark = pytest.mark.integration
ROWS_OF = "tbody tr"
WAIT_FOR = f"table#quotes {ROWS_OF}"
SITES = {
    "scripted": {"start_urls": ["/js/equities/{region}/{trading_date}/quotes?page=1"],
                 "browser": {"wait_for": WAIT_FOR, "timeout_seconds": 15}},
    "scripted_hang": {"start_urls": ["/js-hang/equities/{region}/{trading_date}/quotes?page=1"],
                      "browser": {"wait_for": WAIT_FOR, "timeout_seconds": 6}},
    "scripted_proxied": {"start_urls": ["/js/equities/{region}/{trading_date}/quotes?page=1"],
                         "browser": {"wait_for": WAIT_FOR}, "proxy_conn_id": "browser_proxy"},
    "plain": {},  # the same rows, in the HTML: the reference
}  # fmt: skip
COLUMNS = "symbol, name, last_price, change, change_pct, volume, listed_on"


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    sites = {name: {"regions": ["americas"], **changes} for name, changes in SITES.items()}
    return equities_variants(tmp_path_factory.mktemp("browser") / "config", sites)


@pytest.fixture(scope="module")
def dags(config, airflow_db):
    with dags_of(config) as bag:
        yield bag


@pytest.fixture
def sites(config, dags, monkeypatch):
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))
    return dags


def rows(warehouse, site: str, day: date) -> list[tuple]:
    return warehouse.execute(
        f"SELECT {COLUMNS} FROM scraped.{site} WHERE trading_date = %s ORDER BY symbol", (day,)
    ).fetchall()


def test_a_page_whose_rows_a_script_writes_loads_exact_rows_rendered_by_chromium(
    sites, warehouse, pg, demo_url
):
    day = date(2026, 7, 6)
    static = fetch(f"{demo_url}/js/equities/americas/{day}/quotes?page=1")
    assert b'<tr class="quote">' not in static.split(b"<script>")[0]  # no row in the HTML
    run = run_dag(sites, "scrape__scripted__americas", day)
    assert run.state == "success"
    scraped = xcom(pg, run, "scrape")
    assert scraped["complete"] is True and scraped["items"] == 100, scraped
    assert run_dag(sites, "scrape__plain__americas", day).state == "success"
    assert rows(warehouse, "scripted", day) == rows(warehouse, "plain", day)
    assert len(rows(warehouse, "scripted", day)) == 90


def test_a_page_whose_script_never_finishes_is_a_dead_letter_and_the_crawl_partial(
    sites, warehouse, pg
):
    day = date(2026, 7, 7)
    run = run_dag(sites, "scrape__scripted_hang__americas", day)
    assert run.state == "success"
    scraped = xcom(pg, run, "scrape")
    assert scraped["complete"] is False and scraped["incomplete"] == {"browser": 1}, scraped
    (letter,) = scraped["first_dead_letters"]
    assert letter["reason"].startswith(
        "the page did not settle in the browser within 6 s, and 'table#quotes tbody tr' never "
        "showed: http://"
    ), letter
    assert letter["reason"].endswith(f"/js-hang/equities/americas/{day}/quotes?page=3")
    assert len(rows(warehouse, "scripted_hang", day)) == 36  # pages 1-2, 2 rejects each


def chromium_under(pid: int) -> list[psutil.Process]:
    try:
        tree = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in tree if _is_chromium(p)]


def _is_chromium(process: psutil.Process) -> bool:
    """Whether ``process`` is a chromium one; one that exited since it was listed is not (a
    short-lived helper of the crawl's start-up did, once, on a fresh clone)."""
    try:
        name = process.name()
    except psutil.NoSuchProcess:
        return False
    return "chromium" in name or "chrome" in name


def test_a_killed_task_leaves_no_chromium_behind(config, sites):
    """The task process is SIGKILLed while its crawl's chromium waits on the never-finishing
    page: the crawl dies with it (PR_SET_PDEATHSIG), and its browser too, within seconds."""
    site = "scripted_hang"
    task = subprocess.Popen(
        [sys.executable, "-c", RUN_ONE, str(REPO / "dags" / scrape_dag_file(site)),
         f"scrape__{site}__americas", "2026-07-08"],
        env={**os.environ, "OFFPEAK_CONFIG_DIR": str(config)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seen: list[psutil.Process] = []

    def browsing() -> bool:
        seen[:] = chromium_under(task.pid)
        return len(seen) >= 2  # the browser and its renderer

    kill_when(task, site, browsing, "its crawl's chromium to run", timeout=120)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [p for p in seen if p.is_running()]:
        time.sleep(0.2)
    left = [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"chromium outlived its task: {left}"


def test_the_preview_shows_the_rendered_rows(config, demo_url):
    done = subprocess.run(
        [sys.executable, "-m", "offpeak.preview", str(config / "sites/scripted.yaml"),
         "--region", "americas", "--date", "2026-07-06", "--base-url", demo_url],
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins")}, capture_output=True,
        text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\nRows (" in done.stdout and "Café Olé Foods Inc." in done.stdout, done.stdout


def test_a_rendered_sites_proxy_carries_the_browsers_requests(
    sites, warehouse, monkeypatch, tmp_path
):
    """The browser goes through the site's proxy too (tinyproxy without a login here:
    Chromium answers a proxy's 407 challenge, which tinyproxy never sends)."""
    proxy = Tinyproxy(tmp_path / "tinyproxy", None, None).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_BROWSER_PROXY", proxy.connection())
        day = date(2026, 7, 9)
        run = run_dag(sites, "scrape__scripted_proxied__americas", day)
        assert run.state == "success"
        pages = {u for u in proxy.requests() if f"/americas/{day}/quotes?page=" in u}
        assert len(pages) == 5, proxy.requests()
        assert len(rows(warehouse, "scripted_proxied", day)) == 90
    finally:
        proxy.stop()


def chromium_of_this_process() -> list[psutil.Process]:
    """Chromium processes started by a crawl of this test process (the crawl's environment,
    which its browser inherits, names its task's pid: OFFPEAK_PARENT_PID)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            chromium = "chrom" in (proc.info["name"] or "")
            ours = chromium and proc.environ().get("OFFPEAK_PARENT_PID") == str(os.getpid())
            if ours and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_a_rendered_crawl_stopped_at_its_windows_end_leaves_no_chromium(
    sites, demo_url, tmp_path, monkeypatch
):
    """The window's end stops a crawl whose browser waits on a page that never settles: the
    stop ladder ends the crawl, and its chromium goes with it."""
    from datetime import UTC, datetime, timedelta

    from offpeak.config import get_site
    from offpeak.crawl import runner
    from offpeak.crawl.runner import Crawler, CrawlRequest
    from offpeak.crawl.window import WindowBudget
    from offpeak.partition import Partition

    monkeypatch.setattr(runner, "WINDOW_GRACE_SECONDS", 1.0)
    site, _ = get_site("scripted_hang")
    site = site.model_copy(update={"browser": site.browser.model_copy(
        update={"timeout_seconds": 60})})  # fmt: skip
    closes = datetime.now(tz=UTC) + timedelta(seconds=4)
    request = CrawlRequest(
        site, Partition(site.name, "americas", date(2026, 7, 10), "window"), demo_url,
        window=WindowBudget(closes, "America/New_York", 4.0),
    )  # fmt: skip
    crawler = Crawler()
    seen: list[psutil.Process] = []

    def watch() -> None:  # the crawl's chromium while it runs
        while crawler.proc is None or crawler.proc.poll() is None:
            seen.extend(p for p in chromium_of_this_process() if p not in seen)
            time.sleep(0.2)

    import threading

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = crawler.run(request, tmp_path)
    watcher.join(timeout=5)
    assert result.stopped_at_window_end and seen, (result.stopped_at_window_end, seen)
    deadline = time.monotonic() + 10
    while chromium_of_this_process() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert chromium_of_this_process() == []
