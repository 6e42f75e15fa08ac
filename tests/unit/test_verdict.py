"""The crawl verdict and the decision at its end (publish, partial, fail) from stats; redaction."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from offpeak.config import get_site
from offpeak.crawl import contract, output
from offpeak.crawl.runner import CrawlRequest, CrawlResult
from offpeak.crawl.verdict import Finished, decide, judge
from offpeak.crawl.window import WindowBudget
from offpeak.partition import Partition


@pytest.fixture(scope="module")
def site():
    return get_site("equities")[0]


def test_a_clean_crawl_is_complete(site):
    verdict = judge(site, {"finish_reason": "finished"}, 0)
    assert (verdict.outcome, verdict.reasons) == ("complete", [])


def test_any_lost_page_makes_it_partial_with_each_cause(site):
    stats = {
        "finish_reason": "finished",
        "offpeak/incomplete/http_error": 1,
        "offpeak/incomplete/truncated": 2,
        "offpeak/incomplete/offsite": 0,  # counted zero times: not a cause
    }
    verdict = judge(site, stats, 0)
    assert verdict.outcome == "partial"
    assert verdict.reasons == [
        "1 requests failed with an HTTP error after their retries",
        "2 pages were cut short in transfer (the connection closed before the end of their body)",
    ]


def test_a_bad_exit_or_finish_reason_fails(site):
    assert judge(site, {"finish_reason": "finished"}, 1).outcome == "failed"
    failed = judge(site, {"finish_reason": "shutdown"}, 0)
    assert failed.reasons == ["the crawl ended with exit code 0, finish reason 'shutdown'"]


def test_a_window_stop_fails_or_is_partial_as_configured(site):
    stop = "the off-peak window closed at 07:00:00 Europe/London"
    failed = judge(site, {"finish_reason": "closespider_timeout"}, 0, window_stop=stop)
    assert failed.outcome == "failed"
    assert failed.reasons == [f"{stop}; quality.on_window_end is 'fail', so nothing is published"]
    lenient = site.model_copy(
        update={"quality": site.quality.model_copy(update={"on_window_end": "partial"})}
    )
    partial = judge(lenient, {"finish_reason": "closespider_timeout"}, 0, window_stop=stop)
    assert (partial.outcome, partial.reasons) == ("partial", [f"{stop} (on_window_end: partial)"])


def retry_after_stats(until: int = 1_800_000_000) -> tuple[int, dict]:
    """A crawl stopped because the site asked for an hour's pause, above the cap."""
    return until, {
        "finish_reason": contract.FINISH_RETRY_AFTER,
        contract.RETRY_AFTER_ASKED: 3600,
        contract.RETRY_NOT_BEFORE: until,
    }


def test_a_retry_after_above_the_cap_fails_with_the_time_asked(site):
    until, stats = retry_after_stats()
    verdict = judge(site, stats, 0)
    assert verdict.outcome == "failed"
    assert verdict.reasons == [
        "the site asked to wait 3,600 s (Retry-After), above politeness.max_retry_after_seconds 60"
    ]
    assert verdict.retry_not_before == datetime.fromtimestamp(until, tz=UTC)


def test_throttling_is_not_an_http_error():
    from offpeak.crawl.checks import http_errors

    stats = {
        "downloader/response_status_count/200": 5,
        "downloader/response_status_count/429": 4,
        "downloader/response_status_count/503": 3,
        "offpeak/throttled/429": 4,
        "offpeak/throttled/503": 1,
    }
    assert http_errors(stats) == {503: 2}


def test_stored_urls_lose_the_secret_in_every_spelling():
    key = "s3cr3t/key+42"
    url = "https://x.test/funds/eu/2026-10-06/?page=1&api_key=s3cr3t%2Fkey%2B42&b=2"
    assert contract.strip_secret(url, key) == "https://x.test/funds/eu/2026-10-06/?page=1&b=2"
    path = "https://x.test/k/s3cr3t%2fkey%2b42/data"
    assert contract.strip_secret(path, key) == "https://x.test/k/***/data"
    line = "GET https://x.test/?api_key=s3cr3t%2Fkey%2B42 and s3cr3t/key+42 and s3cr3t%2Fkey+42"
    assert contract.redact(line, key) == "GET https://x.test/?api_key=*** and *** and ***"
    assert contract.strip_secret(url, None) == url


def test_retry_after_reads_seconds_and_http_dates():
    pytest.importorskip("scrapy")
    from offpeak.scraping.middlewares import retry_after_seconds

    assert retry_after_seconds(b"5") == 5.0
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC).timestamp()
    assert retry_after_seconds("Fri, 27 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("Fri, 27 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# ------------------------------------------------------------------ the decision at a crawl's end

DAY = date(2026, 11, 18)
PART = Partition("equities", "europe", DAY, "scheduled__2026-11-18T06:00:00+00:00")
# 07:00 in London on that day (GMT): the window's end, as users read it in the message.
CLOSES = datetime(2026, 11, 18, 7, 0, tzinfo=UTC)
WINDOW = WindowBudget(closes=CLOSES, timezone="Europe/London", seconds=120.0)
STOPPED = "the off-peak window closed at 07:00:00 Europe/London and stopped the crawl after"


def crawled(pages: int, items: int, finish: str = "closespider_timeout") -> dict:
    """Stats of a crawl of ``pages`` pages whose every field was found in every item."""
    fields = {f"offpeak/field/{name}": items for name in ("symbol", "name", "last_price")}
    return {
        "finish_reason": finish,
        "response_received_count": pages,
        **fields,
        "offpeak/field/volume": items,
    }


@pytest.fixture(scope="module")
def lenient(site):
    """equities with ``quality.on_window_end: partial``."""
    return site.model_copy(
        update={"quality": site.quality.model_copy(update={"on_window_end": "partial"})}
    )


def test_a_crawl_stopped_by_the_window_with_items_publishes_a_partial_feed(lenient):
    finished = Finished(crawled(pages=2, items=40), 0, items=40)
    decision = decide(lenient, PART, finished, window=WINDOW)
    assert decision.outcome == "partial" and decision.message is None
    assert decision.reasons == [f"{STOPPED} 2 pages (on_window_end: partial)"]
    assert all(check.passed for check in decision.checks)
    crawl = CrawlResult(
        CrawlRequest(lenient, PART, "http://site"), output.CrawlFiles(Path("/work")),
        Finished(crawled(2, 40), 0, items=40), output.FeedSummary(40, 4000, "0" * 64), 1.0,
        decision,
    )  # fmt: skip
    pointer = output.pointer(crawl, uri="file:///raw/x.jsonl", dead_letters_uri="", started=CLOSES)
    assert Partition.from_xcom(pointer) == PART
    assert pointer["complete"] is False
    assert pointer["finish_reason"] == "closespider_timeout"
    assert pointer["stats"]["pages"] == 2


def test_a_crawl_stopped_by_the_window_with_no_items_fails_and_says_why(lenient):
    decision = decide(lenient, PART, Finished(crawled(pages=0, items=0), 0, items=0), window=WINDOW)
    assert decision.outcome == "failed" and decision.failed_checks
    assert decision.message == (
        "quality check min_items failed for site equities region europe 2026-11-18: "
        "scraped 0 items, fewer than min 10; the crawl was incomplete: "
        f"{STOPPED} 0 pages (on_window_end: partial)"
    )


def test_a_crawl_the_watchdog_stopped_fails_by_default_and_names_the_window(site):
    """Scrapy's own timeout waited on requests in flight; the watchdog stopped the crawl."""
    stats = crawled(pages=1, items=20, finish="shutdown")
    finished = Finished(stats, -15, items=20, stopped_at_window_end=True)
    decision = decide(site, PART, finished, window=WINDOW)
    assert decision.outcome == "failed" and not decision.failed_checks
    assert decision.checks == []  # nothing to publish, so nothing checked
    assert decision.message == (
        f"site 'equities' region 'europe' 2026-11-18: {STOPPED} 1 pages; "
        "quality.on_window_end is 'fail', so nothing is published; see the crawl log above"
    )


def test_a_crawl_that_finished_before_the_window_closed_is_complete(site):
    stats = crawled(pages=5, items=100, finish="finished")
    decision = decide(site, PART, Finished(stats, 0, items=100), window=WINDOW)
    assert (decision.outcome, decision.reasons, decision.message) == ("complete", [], None)
    assert decision.complete
    assert {check.name for check in decision.checks} >= {"min_items", "field_coverage"}


def test_a_bad_exit_not_caused_by_the_window_fails(lenient):
    stats = crawled(pages=3, items=60, finish="finished")
    decision = decide(lenient, PART, Finished(stats, 1, items=60), window=WINDOW)
    assert decision.outcome == "failed" and not decision.failed_checks
    assert decision.message == (
        "site 'equities' region 'europe' 2026-11-18: the crawl ended with exit code 1, "
        "finish reason 'finished'; see the crawl log above"
    )


def test_the_sites_own_timeout_is_not_the_window(lenient):
    """When the window did not limit the crawl, closespider_timeout is a plain bad finish."""
    stats = crawled(pages=3, items=60)
    decision = decide(lenient, PART, Finished(stats, 0, items=60), window=None)
    assert decision.outcome == "failed"
    assert "finish reason 'closespider_timeout'" in decision.message
    assert "off-peak window" not in decision.message


def test_dead_letters_are_named_in_the_failure(site):
    letters = [{"reason": f"page {n} unreadable"} for n in range(1, 5)]
    finished = Finished({"finish_reason": "finished"}, 1, items=0, dead_letters=letters)
    decision = decide(site, PART, finished)
    assert decision.message.endswith(
        "; 4 dead letter(s): page 1 unreadable; page 2 unreadable; page 3 unreadable "
        "(and 1 more); see the crawl log above"
    )


def test_a_retry_after_above_the_cap_can_be_waited_out(site):
    until, stats = retry_after_stats()
    decision = decide(site, PART, Finished(stats, 0, items=0))
    assert decision.retry_not_before == datetime.fromtimestamp(until, tz=UTC)
    assert decision.retry_message == (
        "site 'equities' region 'europe' 2026-11-18: the site asked to wait 3,600 s "
        "(Retry-After), above politeness.max_retry_after_seconds 60"
    )
    assert decision.message == f"{decision.retry_message}; see the crawl log above"
