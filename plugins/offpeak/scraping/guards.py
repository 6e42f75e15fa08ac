"""Crawl guards: stay on the site's hosts, honour Retry-After, and list every failed request."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.utils.httpobj import urlparse_cached
from twisted.web.iweb import UNKNOWN_LENGTH

from offpeak.crawl import contract

log = logging.getLogger("offpeak.guards")


def _secret() -> str | None:
    return os.environ.get(contract.API_KEY_ENV) or None


def stored_url(url: str) -> str:
    """A URL as it may be stored or logged: without the site's secret."""
    return contract.strip_secret(url, _secret())


def _mib(size: int) -> str:
    return f"{size / 1048576:g} MiB"


# request.meta keys: the body length the answer's headers announced (None: chunked or ended by
# closing the connection), and the body bytes received so far (the last try's).
LENGTH = "offpeak_body_length"
RECEIVED = "offpeak_body_received"
# Scrapy's words when a compressed answer passes DOWNLOAD_MAXSIZE once decompressed.
DECOMPRESSED_TOO_LARGE = re.compile(r"\((\d+) B compressed, .* during decompression")


class DeadLetters:
    """Every request of the crawl that failed or was refused, with URL, status and reason:
    written as JSON Lines to ``OFFPEAK_DEAD_LETTERS_FILE`` when the spider closes, counted in
    ``offpeak/dead_letters``, and logged as it happens. Each one makes the crawl incomplete
    (``offpeak/incomplete/<cause>``)."""

    def __init__(self, crawler, path: Path) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.path = path
        self.letters: list[dict[str, Any]] = []
        self.expected_size: dict[str, int] = {}  # url -> Content-Length of a too-large answer
        self.maxsize = crawler.settings.getint("DOWNLOAD_MAXSIZE")

    @classmethod
    def from_crawler(cls, crawler):
        path = crawler.settings.get(contract.DEAD_LETTERS_FILE)
        if not path:
            raise NotConfigured(f"{contract.DEAD_LETTERS_FILE} is not set")
        ext = cls(crawler, Path(path))
        crawler.dead_letters = ext  # the spiders' errback and the guards report here
        crawler.signals.connect(ext.headers_received, signal=signals.headers_received)
        crawler.signals.connect(ext.bytes_received, signal=signals.bytes_received)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def headers_received(self, headers, body_length, request, spider) -> None:
        # Twisted's UNKNOWN_LENGTH is a string: a chunked answer, or one that ends when the
        # server closes the connection. Its size is known only as its bytes arrive.
        known = body_length != UNKNOWN_LENGTH and isinstance(body_length, int)
        request.meta[LENGTH] = body_length if known else None
        request.meta[RECEIVED] = 0
        if known and self.maxsize and body_length > self.maxsize:
            self.expected_size[request.url] = body_length

    def bytes_received(self, data, request, spider) -> None:
        meta = request.meta
        if RECEIVED in meta:
            meta[RECEIVED] += len(data)

    def add(self, url: str, cause: str, reason: str, status: int | None = None, retries=0) -> None:
        letter = {
            "url": stored_url(url),
            "status": status,
            "cause": cause,
            "reason": reason,
            "retries": retries,
        }
        self.letters.append(letter)
        self.stats.inc_value(contract.DEAD_LETTERS)
        self.stats.inc_value(contract.INCOMPLETE_PREFIX + cause)
        log.warning("Dead letter: %s", contract.redact(reason, _secret()))

    def failure(self, failure) -> None:
        """Errback of every request the spiders make: name what happened to it."""
        from scrapy.exceptions import (
            CannotResolveHostError,
            DownloadCancelledError,
            DownloadConnectionRefusedError,
            DownloadTimeoutError,
            ResponseDataLossError,
        )
        from scrapy.spidermiddlewares.httperror import HttpError
        from twisted.internet.error import (
            ConnectionLost,
            ConnectionRefusedError,
            DNSLookupError,
            TCPTimedOutError,
            TimeoutError,
        )
        from twisted.web._newclient import ResponseFailed, ResponseNeverReceived

        request = failure.request
        url = stored_url(request.url)
        retries = request.meta.get("retry_times", 0)
        after = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        exc = failure.value
        if isinstance(exc, HttpError):
            status = exc.response.status
            self.add(url, "http_error", f"HTTP {status} from {url}{after}", status, retries)
            return
        message = str(exc)
        if isinstance(exc, IgnoreRequest):
            if "robots.txt" in message:
                path = urlparse_cached(request).path or "/"
                self.add(url, "robots", f"robots.txt disallows {path} ({url})")
            elif "max redirections" in message:
                first = stored_url((request.meta.get("redirect_urls") or [request.url])[0])
                hops = request.meta.get("redirect_times", 0)
                self.add(url, "redirect_loop", f"redirect loop at {first}: gave up after {hops} "
                         "redirects (REDIRECT_MAX_TIMES)")  # fmt: skip
            elif getattr(exc, "offpeak_reported", False):
                return  # the guard that refused it has said why
            elif found := DECOMPRESSED_TOO_LARGE.search(message):
                self.add(url, "too_large", f"response from {url} ({int(found[1]):,} bytes "
                         "compressed) exceeds politeness.download_maxsize "
                         f"{_mib(self.maxsize)} once decompressed")  # fmt: skip
            else:
                self.add(url, "refused", f"request refused: {message} ({url})")
            return
        if "larger than download max size" in message or request.url in self.expected_size:
            size = self.expected_size.get(request.url)
            what = f"response of {size:,} bytes" if size else "response"
            self.add(url, "too_large", f"{what} from {url} exceeds politeness.download_maxsize "
                     f"{_mib(self.maxsize)}")  # fmt: skip
            return
        received = request.meta.get(RECEIVED, 0)
        if isinstance(exc, DownloadCancelledError) and self.maxsize and received > self.maxsize:
            # No length to refuse it by up front: Scrapy cancels the body once it passes the
            # limit, with an empty message.
            self.add(url, "too_large", f"response of at least {received:,} bytes from {url} "
                     "(sent without a Content-Length) exceeds politeness.download_maxsize "
                     f"{_mib(self.maxsize)}")  # fmt: skip
            return
        if isinstance(exc, ResponseDataLossError):
            length = request.meta.get(LENGTH)
            if length is None:
                how = f"after {received:,} bytes of a chunked body, before its last chunk"
            else:
                how = f"after {received:,} of the {length:,} bytes its Content-Length announced"
            self.add(url, "truncated", f"{url} was cut short{after}: the connection closed "
                     f"{how}; none of its rows are stored", None, retries)  # fmt: skip
            return
        if isinstance(exc, ConnectionRefusedError | DownloadConnectionRefusedError):
            cause, what = "connection", "connection refused"
        elif isinstance(exc, DNSLookupError | CannotResolveHostError):
            cause, what = "connection", "DNS lookup failed"
        elif isinstance(exc, TimeoutError | TCPTimedOutError | DownloadTimeoutError):
            timeout = self.crawler.settings.getfloat("DOWNLOAD_TIMEOUT")
            cause, what = "timeout", f"no answer within DOWNLOAD_TIMEOUT {timeout:g} s"
        elif isinstance(exc, ResponseNeverReceived | ResponseFailed | ConnectionLost) or (
            "ConnectionLost" in message or "ConnectionDone" in message
        ):
            cause, what = "connection", "connection reset by peer before a whole response"
        else:
            cause, what = "download", f"{type(exc).__name__}: {message}"
        self.add(url, cause, f"{what} on {url}{after}", None, retries)

    def spider_closed(self, spider, reason: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            for letter in self.letters:
                out.write(json.dumps(letter, ensure_ascii=False) + "\n")
        tmp.replace(self.path)


class OnSite:
    """Downloader middleware: refuse (and name) every request to a host that is not the
    site's: redirects and followed links elsewhere included. Runs before robots.txt, so not
    even a foreign robots.txt is fetched."""

    def __init__(self, crawler, hosts: set[str]) -> None:
        self.crawler = crawler
        self.hosts = hosts

    @classmethod
    def from_crawler(cls, crawler):
        hosts = {h.strip().lower() for h in crawler.settings.getlist(contract.ALLOWED_HOSTS)}
        if not hosts:
            raise NotConfigured(f"{contract.ALLOWED_HOSTS} is not set")
        return cls(crawler, hosts)

    def process_request(self, request, spider=None):
        host = (urlparse_cached(request).hostname or "").lower()
        if host in self.hosts:
            return None
        url = stored_url(request.url)
        came_from = request.meta.get("redirect_urls")
        how = f"a redirect from {stored_url(came_from[-1])}" if came_from else "a link"
        reason = (
            f"off-site request refused: {how} to host {host!r} ({url}); the site's hosts are "
            f"{sorted(self.hosts)} (its connection's host and politeness.allowed_hosts)"
        )
        self.crawler.dead_letters.add(url, "offsite", reason)
        self.crawler.stats.inc_value("offsite/filtered")
        error = IgnoreRequest(reason)
        error.offpeak_reported = True
        raise error


def retry_after_seconds(value: bytes | str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None when
    absent or unreadable."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryAfter:
    """Downloader middleware (before RetryMiddleware): a 429 or 503 with Retry-After waits as
    long as the site asks, without blocking the reactor, and holds back every request to that
    host meanwhile; then retries. Such an answer is throttling, counted in
    ``offpeak/throttled/<status>``, not an HTTP error. A wait above
    politeness.max_retry_after_seconds ends the crawl, saying how long the site asked for."""

    STATUSES = (429, 503)

    def __init__(self, crawler, cap: float, times: int) -> None:
        self.crawler = crawler
        self.cap = cap
        self.times = times
        self.not_before: dict[str, float] = {}

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        return cls(crawler, s.getfloat(contract.MAX_RETRY_AFTER, 60), s.getint(
            contract.MAX_RETRY_AFTER_TIMES, 3))  # fmt: skip

    async def _sleep(self, seconds: float) -> None:
        from scrapy.utils.defer import maybe_deferred_to_future
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await maybe_deferred_to_future(deferLater(reactor, seconds, lambda: None))

    async def process_request(self, request, spider=None):
        host = urlparse_cached(request).netloc
        wait = self.not_before.get(host, 0) - time.monotonic()
        if wait > 0:
            await self._sleep(wait)
        return None

    async def process_response(self, request, response, spider=None):
        if response.status not in self.STATUSES:
            return response
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        done = request.meta.get("offpeak_retry_after_times", 0)
        if wait is None or done >= self.times:
            return response  # RetryMiddleware and HttpError judge it as usual
        stats = self.crawler.stats
        url = stored_url(request.url)
        if wait > self.cap:
            stats.max_value(contract.RETRY_AFTER_ASKED, round(wait))
            stats.max_value(contract.RETRY_NOT_BEFORE, round(time.time() + wait))
            reason = (
                f"{url} answered {response.status} with Retry-After "
                f"{response.headers.get('Retry-After', b'').decode('latin-1')!s}: the site asks "
                f"to wait {wait:,.0f} s, above politeness.max_retry_after_seconds {self.cap:g}"
            )
            self.crawler.dead_letters.add(url, "retry_after", reason, response.status)
            from scrapy.utils.defer import deferred_from_coro

            deferred_from_coro(
                self.crawler.engine.close_spider_async(reason=contract.FINISH_RETRY_AFTER)
            )
            error = IgnoreRequest(reason)
            error.offpeak_reported = True
            raise error
        stats.inc_value(f"{contract.THROTTLED_PREFIX}{response.status}")
        host = urlparse_cached(request).netloc
        self.not_before[host] = max(self.not_before.get(host, 0), time.monotonic() + wait)
        log.info("%s answered %s with Retry-After: waiting %.1f s before retrying (and before "
                 "any other request to %s)", url, response.status, wait, host)  # fmt: skip
        await self._sleep(wait)
        retry = request.replace(dont_filter=True)
        retry.meta["offpeak_retry_after_times"] = done + 1
        return retry
