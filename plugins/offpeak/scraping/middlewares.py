"""Downloader middlewares: stay on the site's hosts, go through its proxy, and wait out a
Retry-After."""

from __future__ import annotations

import logging
import os
import time
from email.utils import parsedate_to_datetime

from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.utils.httpobj import urlparse_cached

from offpeak.crawl import contract
from offpeak.scraping.secret import stored_url

log = logging.getLogger("offpeak.guards")  # the name the task log has always shown


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


class ThroughProxy:
    """Downloader middleware: every request of the site through its proxy (``proxy_conn_id``),
    robots.txt and retries included. The proxy's URL, credentials included, comes in the
    environment; Scrapy's HttpProxyMiddleware, next, turns the credentials into a
    Proxy-Authorization header and keeps them out of the request's meta. Each request also
    carries the proxy's name (no secret), for dead letters to name it."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name

    @classmethod
    def from_crawler(cls, crawler):
        url = os.environ.get(contract.PROXY_URL_ENV)
        if not url:
            raise NotConfigured("the site has no proxy")
        return cls(url, crawler.settings.get(contract.PROXY_NAME) or "its proxy")

    def process_request(self, request, spider=None):
        request.meta["proxy"] = self.url
        request.meta[contract.PROXY_META] = self.name


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
