"""What the transport says about a body, as DeadLetters names it: a chunked answer's
unknown length, a body cut short, an answer past DOWNLOAD_MAXSIZE as it streams or once
decompressed (Scrapy's own exceptions, driven without a crawl)."""

from __future__ import annotations

import logging

import pytest
from scrapy import Request
from scrapy.exceptions import DownloadCancelledError, IgnoreRequest, ResponseDataLossError
from scrapy.utils.test import get_crawler
from twisted.python.failure import Failure
from twisted.web.iweb import UNKNOWN_LENGTH

from offpeak.crawl import contract
from offpeak.scraping.extensions.dead_letters import DeadLetters

URL = "http://127.0.0.1:8808/equities/europe/2026-03-03/quotes?page=3"
MAXSIZE = 1024 * 1024


@pytest.fixture
def letters(tmp_path) -> DeadLetters:
    crawler = get_crawler(
        settings_dict={
            contract.DEAD_LETTERS_FILE: str(tmp_path / "dead.jsonl"),
            "DOWNLOAD_MAXSIZE": MAXSIZE,
        }
    )
    return DeadLetters(crawler, tmp_path / "dead.jsonl")


def fail(letters: DeadLetters, request: Request, exc: Exception) -> dict:
    failure = Failure(exc)
    failure.request = request
    letters.failure(failure)
    return letters.letters[-1]


def received(letters: DeadLetters, request: Request, length, *chunks: int) -> None:
    letters.headers_received({}, length, request, None)
    for size in chunks:
        letters.bytes_received(b"x" * size, request, None)


def test_a_chunked_answer_has_an_unknown_length_and_no_error(letters, caplog):
    request = Request(URL)
    with caplog.at_level(logging.DEBUG):
        received(letters, request, UNKNOWN_LENGTH, 4096, 100)
    assert caplog.records == []
    assert letters.letters == [] and letters.expected_size == {}


def test_a_chunked_body_without_its_last_chunk_is_truncated(letters):
    request = Request(URL, meta={"retry_times": 2})
    received(letters, request, UNKNOWN_LENGTH, 2000, 101)
    letter = fail(letters, request, ResponseDataLossError())
    assert (letter["cause"], letter["retries"]) == ("truncated", 2)
    assert letter["reason"] == (
        f"{URL} was cut short after 2 retries: the connection closed after 2,101 bytes of a "
        "chunked body, before its last chunk; none of its rows are stored"
    )
    assert letters.stats.get_value(contract.INCOMPLETE_PREFIX + "truncated") == 1


def test_a_body_shorter_than_its_content_length_is_truncated(letters):
    request = Request(URL)
    received(letters, request, 5526, 2101)
    letter = fail(letters, request, ResponseDataLossError())
    assert letter["reason"] == (
        f"{URL} was cut short: the connection closed after 2,101 of the 5,526 bytes its "
        "Content-Length announced; none of its rows are stored"
    )


def test_a_chunked_answer_cancelled_past_the_size_limit_names_the_limit(letters):
    request = Request(URL)
    received(letters, request, UNKNOWN_LENGTH, MAXSIZE, 65536)
    letter = fail(letters, request, DownloadCancelledError(""))
    assert letter["cause"] == "too_large"
    assert letter["reason"] == (
        f"response of at least 1,114,112 bytes from {URL} (sent without a Content-Length) "
        "exceeds politeness.download_maxsize 1 MiB"
    )


def test_a_cancel_below_the_size_limit_is_not_called_too_large(letters):
    request = Request(URL)
    received(letters, request, UNKNOWN_LENGTH, 1000)
    assert fail(letters, request, DownloadCancelledError(""))["cause"] == "download"


def test_an_answer_too_large_once_decompressed_names_the_limit(letters):
    message = (
        f"Ignored response <200 {URL}> because its body (10240 B compressed, 1048577 B "
        f"decompressed so far) exceeded DOWNLOAD_MAXSIZE ({MAXSIZE} B) during decompression."
    )
    letter = fail(letters, Request(URL), IgnoreRequest(message))
    assert letter["cause"] == "too_large"
    assert letter["reason"] == (
        f"response from {URL} (10,240 bytes compressed) exceeds politeness.download_maxsize "
        "1 MiB once decompressed"
    )


def test_a_dead_letter_keeps_no_secret_in_its_url_or_reason(letters, monkeypatch):
    """The site's API key in a request URL (funds' start URL carries it) is stored neither in
    the letter's url nor in its reason, also when the reason quotes an exception that names
    the raw URL: the dead letters file is on the data root, and the first letters go into a
    partial-day alert."""
    monkeypatch.setenv(contract.API_KEY_ENV, "s3cr3t/key+42")
    raw = "http://127.0.0.1:8808/funds/india/2026-11-12/?page=3&api_key=s3cr3t%2Fkey%2B42"
    letter = fail(letters, Request(raw), IgnoreRequest(f"Filtered offsite request: <GET {raw}>"))
    assert letter["cause"] == "refused"
    assert "s3cr3t" not in letter["url"] and "s3cr3t" not in letter["reason"], letter
    assert letter["reason"].startswith("request refused: Filtered offsite request: <GET "), letter
    assert "api_key=***" in letter["reason"], letter["reason"]
