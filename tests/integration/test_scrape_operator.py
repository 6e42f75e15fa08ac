"""ScrapeOperator's subprocess handling: the crawl is stopped by on_kill, failures are named."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from offpeak.config import get_site
from offpeak.crawl import runner
from offpeak.crawl.operator import ScrapeOperator
from offpeak.crawl.window import WindowBudget
from offpeak.partition import Partition

pytestmark = pytest.mark.integration
PART = Partition("equities", "europe", date(2026, 11, 20), "manual__1")


@pytest.fixture
def hanging_site():
    """A stand-in for a site that accepts connections and never answers (a real one cannot be
    made to hang on demand)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_on_kill_stops_the_crawl_subprocess(hanging_site, tmp_path: Path):
    site, _ = get_site("equities")
    op = ScrapeOperator(task_id="scrape", site="equities", region="europe")
    result: dict = {}
    feed, stats = tmp_path / "f.jsonl", tmp_path / "s.json"

    def crawl_target() -> None:
        result["rc"] = op.run_crawl(
            runner.CrawlRequest(site, PART, hanging_site), feed, stats, str(tmp_path)
        )

    crawl = threading.Thread(target=crawl_target, daemon=True)
    crawl.start()
    deadline = time.monotonic() + 30
    while op._proc is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # let Scrapy start and block on the hanging site
    assert op._proc.poll() is None, "the crawl should still be waiting on the site"

    started = time.monotonic()
    op.on_kill()
    crawl.join(timeout=30)
    assert not crawl.is_alive()
    assert op._proc.returncode is not None
    elapsed = time.monotonic() - started
    print(f"on_kill took {elapsed:.1f}s")
    assert elapsed < 12
    # Scrapy may exit 0 after a forced shutdown; the finish reason still tells the truth, and
    # the operator fails on either.
    reason = json.loads(stats.read_text())["finish_reason"] if stats.exists() else None
    print(f"exit code {result['rc']}, finish reason {reason}")
    assert result["rc"] != 0 or reason != "finished"


def test_a_crawl_still_running_after_its_window_is_stopped(hanging_site, tmp_path, monkeypatch):
    """Scrapy's own timeout waits for requests in flight (here: forever); the operator stops the
    crawl a grace period after the window's end, and says it was the window."""

    monkeypatch.setattr(runner, "WINDOW_GRACE_SECONDS", 1.0)
    site, regions = get_site("equities")
    op = ScrapeOperator(task_id="scrape", site="equities", region="europe")
    started = time.monotonic()
    window = WindowBudget(datetime.now(tz=UTC), regions["europe"].timezone, 1.0)
    request = runner.CrawlRequest(site, PART, hanging_site, window=window)
    op.run_crawl(request, tmp_path / "f.jsonl", tmp_path / "s.json", str(tmp_path))
    elapsed = time.monotonic() - started
    print(f"stopped after {elapsed:.1f}s")
    assert op._stopped_at_window_end is True
    assert elapsed < 20  # budget 1 s + grace 1 s + on_kill's escalation (5 s steps)
