"""Trading dates and windows in real runs (dag.test): a run without a logical date, and a crawl
stopped by the end of its off-peak window, failed or loaded as partial per the site config."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from offpeak.config import load_project
from offpeak.schedule.tradingtime import RegionClock
from support import REPO
from support.queries import load_audit

pytestmark = pytest.mark.integration
REGIONS = load_project().regions


def scrape_pointer(pg, dag_id: str, run_id: str) -> dict:
    import psycopg

    with psycopg.connect(pg.uri("airflow")) as conn:
        row = conn.execute(
            "SELECT value::text FROM xcom WHERE dag_id = %s AND run_id = %s "
            "AND task_id = 'scrape' AND key = 'return_value'",
            (dag_id, run_id),
        ).fetchone()
    return json.loads(row[0]) if row else {}


def test_a_run_without_logical_date_scrapes_the_latest_due_day(dagbag, pg, warehouse):
    """What a REST trigger with "logical_date": null gets: no ds, no data interval; the
    trading date is the latest session whose window has opened."""
    dag_id = "scrape__fx_rates__oceania"
    dag = dagbag.get_dag(dag_id)
    clock = RegionClock.of(REGIONS["oceania"])
    before = clock.latest_due_day(datetime.now(tz=UTC))
    run = dag.test(logical_date=None, run_conf={"ignore_window": True})
    after = clock.latest_due_day(datetime.now(tz=UTC))
    assert run.state == "success"
    assert run.logical_date is None and run.data_interval_start is None
    pointer = scrape_pointer(pg, dag_id, run.run_id)
    assert pointer["trading_date"] in {before.isoformat(), after.isoformat()}
    (rows,) = warehouse.execute(
        "SELECT count(*) FROM scraped.fx_rates WHERE region = 'oceania' AND trading_date = %s",
        (pointer["trading_date"],),
    ).fetchone()
    assert rows == 57


@pytest.fixture
def slow_equities(tmp_path: Path, monkeypatch):
    """A config copy in which equities pages come 5-15 s apart (download_delay 10) and
    Europe's window closes 15 s from now: the crawl is stopped after a page to four of five
    (Scrapy lets a request already waiting in the downloader finish). 15 s, not less: the
    run's parse and first tasks must reach the crawl before the window closes on a busy
    machine, or the run would defer to tomorrow's window."""

    def make(on_window_end: str) -> datetime:
        config = tmp_path / "config"
        shutil.copytree(REPO / "include/config", config)
        site_file = config / "sites/equities.yaml"
        site = yaml.safe_load(site_file.read_text())
        site["politeness"] = {"robotstxt_obey": False, "download_delay": 10, "autothrottle": False}
        site["quality"]["on_window_end"] = on_window_end
        site_file.write_text(yaml.safe_dump(site, sort_keys=False))
        closes = (datetime.now(tz=UTC) + timedelta(seconds=15)).replace(microsecond=0)
        local = closes.astimezone(ZoneInfo("Europe/London"))
        regions_file = config / "regions.yaml"
        regions = yaml.safe_load(regions_file.read_text())
        opened = (local - timedelta(hours=1)).strftime("%H:%M:%S")
        regions["regions"]["europe"]["off_peak"] = {"start": opened, "end": f"{local:%H:%M:%S}"}
        regions_file.write_text(yaml.safe_dump(regions, sort_keys=False))
        monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))
        return closes

    return make


DAG = "scrape__equities__europe"
DAY = "2026-11-18"


def partition_rows(warehouse) -> int:
    return warehouse.execute(
        "SELECT count(*) FROM scraped.equities WHERE region = 'europe' AND trading_date = %s",
        (DAY,),
    ).fetchone()[0]


def audits(warehouse) -> list[tuple]:
    columns = "rows_in_file, rows_inserted, rows_deleted, complete"
    return load_audit(warehouse, "equities", "europe", DAY, columns)


def test_window_end_partial_loads_what_was_crawled_and_deletes_nothing(
    dagbag, pg, warehouse, slow_equities
):
    dag = dagbag.get_dag(DAG)
    full = dag.test(run_conf={"trading_date": DAY, "ignore_window": True})
    assert full.state == "success" and partition_rows(warehouse) == 90

    closes = slow_equities("partial")
    run = dag.test(run_conf={"trading_date": DAY})
    assert run.state == "success"
    pointer = scrape_pointer(pg, DAG, run.run_id)
    assert pointer["complete"] is False and pointer["finish_reason"] == "closespider_timeout"
    pages = pointer["stats"]["pages"]
    assert 1 <= pages < 5 and pointer["items"] == 20 * pages
    assert datetime.now(tz=UTC) >= closes
    # The load upserted the rows it got (18 valid per page) and kept the keys it did not reach.
    assert audits(warehouse)[-1] == (18 * pages, 0, 0, False)
    assert partition_rows(warehouse) == 90


def test_window_end_fails_the_run_by_default_and_names_the_window(
    dagbag, pg, warehouse, slow_equities, capfd
):
    dag = dagbag.get_dag(DAG)
    for task in dag.tasks:
        task.retries = 0
    audits_before = audits(warehouse)
    slow_equities("fail")
    run = dag.test(run_conf={"trading_date": DAY})
    assert run.state == "failed"
    assert scrape_pointer(pg, DAG, run.run_id) == {}
    assert audits(warehouse) == audits_before  # nothing loaded
    out = capfd.readouterr()
    text = out.out + out.err
    assert "the off-peak window closed at" in text and "stopped the crawl after" in text
    assert "quality.on_window_end is 'fail'" in text
