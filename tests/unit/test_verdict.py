"""The crawl verdict (complete / partial / failed) from stats alone, and secret redaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from offpeak.config import get_site
from offpeak.crawl import contract
from offpeak.crawl.verdict import judge


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
        "2 pages were cut short (no closing </body> or </html>)",
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


def test_a_retry_after_above_the_cap_fails_with_the_time_asked(site):
    until = 1_800_000_000
    stats = {
        "finish_reason": contract.FINISH_RETRY_AFTER,
        contract.RETRY_AFTER_ASKED: 3600,
        contract.RETRY_NOT_BEFORE: until,
    }
    verdict = judge(site, stats, 0)
    assert verdict.outcome == "failed"
    assert verdict.reasons == [
        "the site asked to wait 3,600 s (Retry-After), above politeness.max_retry_after_seconds 60"
    ]
    assert verdict.retry_not_before == datetime.fromtimestamp(until, tz=UTC)


def test_throttling_is_not_an_http_error():
    from offpeak.pipeline.quality import http_errors

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
    from offpeak.scraping.guards import retry_after_seconds

    assert retry_after_seconds(b"5") == 5.0
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC).timestamp()
    assert retry_after_seconds("Fri, 27 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("Fri, 27 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
