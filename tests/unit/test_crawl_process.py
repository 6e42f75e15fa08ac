"""The crawl subprocess runner: its command line and environment, redaction, and the watchdog."""

from __future__ import annotations

import logging
import signal
import sys
import time
from datetime import date
from pathlib import Path

from offpeak.config import get_site
from offpeak.crawl import contract, process, spec
from offpeak.crawl.runner import CrawlRequest
from offpeak.partition import Partition

PART = Partition("equities", "europe", date(2026, 11, 18), "manual__1")


def test_the_command_names_the_spider_its_arguments_and_settings(tmp_path: Path):
    site, _ = get_site("equities")
    sample = spec.CrawlSample(max_pages=2, start_urls=("/a",))
    argv = process.scrapy_argv(
        site.kind,
        spec.spider_args(site, PART, "http://127.0.0.1:8808", sample),
        spec.scrapy_settings(site, tmp_path / "f.jsonl", tmp_path / "s.json", 30.0, "", sample),
    )
    assert argv[:5] == [sys.executable, "-m", "scrapy", "crawl", "html_table"]
    args = [argv[i + 1] for i, a in enumerate(argv) if a == "-a"]
    assert args == [
        "site=equities",
        "region=europe",
        "trading_date=2026-11-18",
        "base_url=http://127.0.0.1:8808",
        'start_urls=["/a"]',
    ]
    settings = [argv[i + 1] for i, a in enumerate(argv) if a == "-s"]
    assert "CLOSESPIDER_TIMEOUT=30.0" in settings and "CLOSESPIDER_PAGECOUNT=2" in settings


def test_the_secret_travels_in_the_environment_only():
    env = process.scrapy_env("s3cr3t")
    assert env["SCRAPY_SETTINGS_MODULE"] == "offpeak.scraping.settings"
    assert env["PYTHONPATH"].split(":")[0] == str(process.PLUGINS_DIR)
    assert env[contract.API_KEY_ENV] == "s3cr3t"
    assert contract.API_KEY_ENV not in process.scrapy_env(None)


def test_output_is_logged_redacted_and_a_run_past_its_window_is_stopped(tmp_path, caplog):
    child = "import time; print('GET /q?api_key=s3cr3t', flush=True); time.sleep(60)"
    runner = process.CrawlProcess(log=logging.getLogger("test.crawl"), secret="s3cr3t")
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="test.crawl"):
        code = runner.run(
            [sys.executable, "-c", child],
            env=process.scrapy_env(),
            cwd=str(tmp_path),
            window_seconds=0.5,
            grace=1.0,
        )
    assert time.monotonic() - started < 10
    assert code == -signal.SIGTERM and runner.stopped_at_window_end
    lines = [r.getMessage() for r in caplog.records]
    assert "[scrapy] GET /q?api_key=***" in lines
    assert not any("s3cr3t" in line for line in lines)
    assert "The crawl is still running 1 s after its off-peak window closed: stopping it" in lines


def test_a_run_that_ends_in_time_is_not_stopped(tmp_path):
    runner = process.CrawlProcess()
    code = runner.run(
        [sys.executable, "-c", "raise SystemExit(3)"],
        env=process.scrapy_env(),
        cwd=str(tmp_path),
        window_seconds=30,
    )
    assert code == 3 and not runner.stopped_at_window_end
    runner.stop()  # nothing left to stop: no error, no signal


def test_the_operator_hands_the_validated_site_over_in_the_environment(tmp_path, monkeypatch):
    from offpeak.crawl.operator import ScrapeOperator

    seen = {}

    def run(self, argv, *, env, cwd, window_seconds=None, grace=0.0):
        seen.update(argv=argv, env=env)
        return 0

    monkeypatch.setattr(process.CrawlProcess, "run", run)
    site, _ = get_site("equities")
    op = ScrapeOperator(task_id="scrape", site="equities", region="europe")
    feed, stats = tmp_path / "f.jsonl", tmp_path / "s.json"
    op.run_crawl(CrawlRequest(site, PART, "http://h", api_key="k3y"), feed, stats, str(tmp_path))
    assert site.model_validate_json(seen["env"][contract.SITE_CONFIG_ENV]) == site
    assert seen["env"][contract.API_KEY_ENV] == "k3y"
    assert not any("k3y" in a or '"fields"' in a for a in seen["argv"])
