"""Resumable crawls under dag.test() (issue 26): a run whose task process is SIGKILLed mid-crawl
leaves the pages it fetched on the data root (crawl-state/); the next try of the same run reads
them there and fetches only the rest (nginx's access log shows each page answered once), and
loads the exact rows. A state written for another config version, or in an earlier off-peak
window, is never resumed: the log says why, and the crawl starts again from the first page.

The site is the demo's equities served slowly (2 s a page, through nginx), one request at a
time, so that the kill lands mid-crawl with some pages kept and some not yet fetched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import yaml
from test_faults import kill_when
from test_quality import output, xcom

from offpeak.naming import scrape_dag_file, scrape_dag_id
from support import REPO
from support.dagsync import dags_of, equities_variants

pytestmark = pytest.mark.integration
SITE, REGION = "resumable", "americas"
ROUTE = "/faults/slow/equities/{region}/{trading_date}/quotes?page=1"  # 5 pages, 2 s each
PAGES, ROWS = 5, 90  # the demo's equities partition: 100 rows scraped, 90 loaded

# One dag.test() run in a process of its own (the task process the test kills), for the run id
# the next dag.test() of the same logical date will have too.
RUN_ONE = """
import sys
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).get_dag(sys.argv[2])
when = datetime.fromisoformat(sys.argv[3])
dag.test(run_after=when, logical_date=when, run_conf={"ignore_window": True})
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A config copy whose only site is the slow equities, one request at a time."""
    equities = yaml.safe_load((REPO / "include/config/sites/equities.yaml").read_text())
    politeness = {**equities["politeness"], "concurrent_requests_per_domain": 1}
    site = {"regions": [REGION], "start_urls": [ROUTE], "politeness": politeness}
    return equities_variants(tmp_path_factory.mktemp("resume") / "config", {SITE: site})


@pytest.fixture(scope="module")
def dags(config, airflow_db):
    with dags_of(config) as bag:
        yield bag


@pytest.fixture
def resumable(config, dags, nginx, warehouse, session_env, monkeypatch):
    """The slow site's DAG, its config set for the runs, and its table emptied."""
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))
    warehouse.execute(f"DROP TABLE IF EXISTS scraped.{SITE}")
    return dags.get_dag(scrape_dag_id(SITE, REGION))


def window_open(day: date) -> datetime:
    """The logical date of ``day``'s run: its window's opening (the americas window opens in
    the evening of the session's own day)."""
    from offpeak.config import get_site

    region = get_site(SITE)[1][REGION]
    return datetime.combine(day, region.off_peak.start, ZoneInfo(region.timezone))


def state_of(session_env, day: date) -> Path:
    """The folder under which the runs of ``day`` keep their crawl states (one per run)."""
    root = Path(session_env["env"]["OFFPEAK_DATA_ROOT"].removeprefix("file://"))
    return root / "crawl-state" / f"site={SITE}" / f"region={REGION}" / f"date={day}"


def kept_pages(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/pages/*.page"))


def answered(nginx, day: date, since: int) -> Counter:
    """(page number, status) of nginx's answers to the crawls of ``day`` after the first
    ``since`` log lines (499: the client was gone before the answer)."""
    found = Counter()
    for a in nginx.answers()[since:]:
        if f"/{REGION}/{day}/quotes" in a["path"] and "offpeak" in a["agent"]:
            page = int(parse_qs(urlsplit(a["path"]).query)["page"][0])
            found[(page, a["status"])] += 1
    return found


def kill_mid_crawl(config: Path, day: date, state: Path, pages: int = 2) -> None:
    """Start ``day``'s run in a process of its own and SIGKILL it once ``pages`` pages are
    kept on the data root; return when its crawl is gone too."""
    dag_file = REPO / "dags" / scrape_dag_file(SITE)
    task = subprocess.Popen(
        [sys.executable, "-c", RUN_ONE, str(dag_file), scrape_dag_id(SITE, REGION),
         window_open(day).isoformat()],
        env={**os.environ, "OFFPEAK_CONFIG_DIR": str(config)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    kill_when(task, SITE, lambda: len(kept_pages(state)) >= pages, f"{pages} pages kept", 180)


def rerun(dag, day: date):
    """The same run again (the same logical date, so the same run id): the next try."""
    when = window_open(day)
    return dag.test(run_after=when, logical_date=when, run_conf={"ignore_window": True})


def loaded(warehouse, day: date) -> tuple[int, int]:
    return warehouse.execute(
        f"SELECT count(*), count(DISTINCT symbol) FROM scraped.{SITE} WHERE trading_date = %s",
        (day,),
    ).fetchone()


def test_a_killed_crawl_is_resumed_without_fetching_its_pages_again(
    resumable, config, nginx, warehouse, session_env, pg, capfd, caplog
):
    day = date(2026, 6, 15)
    state = state_of(session_env, day)
    since = len(nginx.answers())
    kill_mid_crawl(config, day, state)
    kept = len(kept_pages(state))
    killed = answered(nginx, day, since)
    assert killed.total() >= 2 and kept < PAGES, (killed, kept)
    output(capfd, caplog)  # what the killed run printed: not this run's
    caplog.clear()

    run = rerun(resumable, day)
    assert run.state == "success"
    text = output(capfd, caplog)
    assert f"{kept} page(s) an earlier try fetched are read from there, not fetched again" in (text)
    both = answered(nginx, day, since)
    # Every page answered once, over both tries; a page in flight when the task died was
    # never answered to it (nginx logs 499), and the retry fetched it.
    assert {page: n for (page, status), n in both.items() if status == "200"} == dict.fromkeys(
        range(1, PAGES + 1), 1
    ), both
    assert loaded(warehouse, day) == (ROWS, ROWS)
    pointer = xcom(pg, run, "scrape")
    assert pointer["complete"] is True and pointer["stats"]["resumed_pages"] == kept
    assert not state.exists() or kept_pages(state) == []  # removed once the crawl ended


@pytest.mark.parametrize("written", ["for another config version", "in an earlier window"])
def test_a_foreign_or_stale_crawl_state_is_not_resumed(
    resumable, config, nginx, warehouse, session_env, capfd, caplog, written
):
    from offpeak.config import get_site
    from offpeak.schedule.tradingtime import RegionClock

    day = date(2026, 6, 16) if written.startswith("for") else date(2026, 6, 17)
    state = state_of(session_env, day)
    since = len(nginx.answers())
    kill_mid_crawl(config, day, state)
    (manifest_file,) = state.glob("*/manifest.json")
    manifest = json.loads(manifest_file.read_text())
    if written.startswith("for"):  # as a try of the site's YAML before an edit would have
        manifest["config"] = hashlib.sha256(b"the site's YAML before an edit").hexdigest()
        why = "it was written for another config version"
    else:  # as a try in yesterday's window would have
        clock = RegionClock.of(get_site(SITE)[1][REGION])
        earlier = clock.last_window_open(datetime.now(tz=ZoneInfo("UTC")) - timedelta(days=1))
        manifest["window_opened"] = earlier.isoformat()
        why = "it is older than this try's off-peak window"
    manifest_file.write_text(json.dumps(manifest))
    killed = {page for (page, status) in answered(nginx, day, since) if status == "200"}
    assert killed, "the killed try had fetched no page"
    output(capfd, caplog)  # what the killed run printed: not this run's
    caplog.clear()

    run = rerun(resumable, day)
    assert run.state == "success"
    text = output(capfd, caplog)
    assert "Not resuming from the crawl state" in text and why in text, text[-3000:]
    assert "starts from its first page" in text
    assert "not fetched again" not in text
    both = answered(nginx, day, since)
    for page in range(1, PAGES + 1):  # fetched again, page 1 first
        assert both[(page, "200")] == (2 if page in killed else 1), both
    assert loaded(warehouse, day) == (ROWS, ROWS)
