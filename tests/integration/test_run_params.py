"""What the trigger form's params do in a real run (dag.test, real crawls of the demo sites),
and what the task log shows: crawl progress, final stats, and no connection secret."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml
from test_pipeline import partition, run_dag

from support import REPO
from support.queries import load_audit

pytestmark = pytest.mark.integration


def audit(warehouse, site: str, region: str, day: date) -> list[tuple]:
    return load_audit(warehouse, site, region, day, "rows_inserted, rows_deleted, complete")


def test_max_pages_crawls_a_sample_and_the_load_deletes_nothing(dagbag, warehouse):
    """equities spreads 100 quotes over 5 pages; max_pages 1 stops after the first."""
    day = date(2026, 6, 2)
    run_dag(dagbag, "scrape__equities__asia_pacific", day)
    assert len(partition(warehouse, "equities", "asia_pacific", day)) == 90
    run = run_dag(dagbag, "scrape__equities__asia_pacific", day, {"max_pages": 1})
    assert run.state == "success"
    # The sample updated what it saw and deleted none of the 90 rows it did not reach.
    assert len(partition(warehouse, "equities", "asia_pacific", day)) == 90
    full, sample = audit(warehouse, "equities", "asia_pacific", day)
    assert full == (90, 0, True)
    assert sample[1:] == (0, False)


def test_dry_run_crawls_and_transforms_but_loads_nothing(dagbag, warehouse):
    day = date(2026, 6, 3)
    run = run_dag(dagbag, "scrape__fx_rates__americas", day, {"dry_run": True})
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert (states["scrape"], states["transform"], states["load"]) == (
        "success",
        "success",
        "skipped",
    )
    (table,) = warehouse.execute("SELECT to_regclass('scraped.fx_rates')").fetchone()
    assert table is None or partition(warehouse, "fx_rates", "americas", day) == []
    assert audit(warehouse, "fx_rates", "americas", day) == []


def test_a_conf_key_no_param_knows_fails_the_run_at_once_naming_it(dagbag, capfd):
    """Airflow accepts it (no Param schema forbids extra keys): the scrape task refuses it,
    without a retry and before any crawl, and nothing is transformed or loaded."""
    day = date(2026, 6, 4)
    run = run_dag(dagbag, "scrape__fx_rates__americas", day, {"max_page": 1, "nonsense": 2})
    assert run.state == "failed"
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert (tis["scrape"].state, tis["scrape"].try_number) == ("failed", 1)
    assert (tis["transform"].state, tis["load"].state) == ("upstream_failed", "upstream_failed")
    out = capfd.readouterr().out
    assert (
        "dag_run.conf has key(s) ['max_page', 'nonsense'] that no parameter of this DAG knows; "
        "its parameters are ['dry_run', 'ignore_breaker', 'ignore_window', 'max_pages', "
        "'start_urls', 'trading_date']"
    ) in out
    assert "[scrapy]" not in out  # no crawl started


@pytest.fixture
def slow_fx_rates(tmp_path: Path, monkeypatch):
    """fx_rates with 1.5 s between pages, and a progress line every second."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "include/config", config)
    site_file = config / "sites/fx_rates.yaml"
    site = yaml.safe_load(site_file.read_text())
    site["politeness"] = {"download_delay": 1.5, "autothrottle": False, "robotstxt_obey": False}
    site_file.write_text(yaml.safe_dump(site, sort_keys=False))
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))
    monkeypatch.setenv("OFFPEAK_PROGRESS_INTERVAL", "1")


def test_task_log_shows_crawl_progress_and_final_stats(dagbag, warehouse, slow_fx_rates, capfd):
    """(That the log masks connection secrets is shown on real task logs, in
    test_operating.py: dag.test() does not run the log redaction of a real task.)"""
    day = date(2026, 6, 4)
    run = run_dag(dagbag, "scrape__fx_rates__asia_pacific", day)
    log = capfd.readouterr()
    text = log.out + log.err
    assert run.state == "success"
    assert len(partition(warehouse, "fx_rates", "asia_pacific", day)) == 57
    assert "Start URL: " in text and "/api/fx/asia_pacific/2026-06-04" in text
    progress = [line for line in text.splitlines() if "progress: " in line]
    assert len(progress) >= 2, "expected a progress line each second of a 3-page crawl"
    assert all(" pages, " in p and " items, " in p and " errors, " in p for p in progress)
    assert "finished (finished): 3 pages, 60 items, 0 errors, 0 HTTP errors" in text
    assert "Crawl published" in text
