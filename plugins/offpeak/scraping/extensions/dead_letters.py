"""Extension: every request of the crawl that failed or was refused, named in a dead letter."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.utils.httpobj import urlparse_cached
from twisted.web.iweb import UNKNOWN_LENGTH

from offpeak.crawl import contract
from offpeak.scraping.secret import redacted, stored_url

log = logging.getLogger("offpeak.guards")  # the name the task log has always shown


# A Server header that names a proxy's software: its answer, not the site's.
PROXY_SERVERS = re.compile(rb"tinyproxy|squid|privoxy|polipo|mitmproxy", re.IGNORECASE)


def proxy_answered(response) -> bool:
    """Whether an error answer came from the proxy rather than the site: a 407, a
    Proxy-Authenticate header, or a Server header naming a proxy's software (tinyproxy
    answers a wrong password with 401 and its own Server header)."""
    server = response.headers.get("Server") or b""
    return (
        response.status == 407
        or b"Proxy-Authenticate" in response.headers
        or bool(PROXY_SERVERS.search(server))
    )


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
        # The reason names the URL: stored, logged and sent in a partial-day alert, it goes
        # without the site's secret, as the url does.
        reason = redacted(reason)
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
        log.warning("Dead letter: %s", reason)

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
        proxy = request.meta.get(contract.PROXY_META)
        if isinstance(exc, HttpError):
            status = exc.response.status
            if proxy and proxy_answered(exc.response):
                server = exc.response.headers.get("Server", b"").decode("latin-1")
                self.add(url, "proxy", f"{proxy} answered HTTP {status} for {url} instead of "
                         f"the site{after}" + (f" (Server: {server})" if server else ""),
                         status, retries)  # fmt: skip
                return
            via = f" (through {proxy})" if proxy else ""
            self.add(url, "http_error", f"HTTP {status} from {url}{via}{after}", status, retries)
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
        if type(exc).__module__.startswith("playwright"):  # a rendered page (its browser)
            self.browser_failure(url, exc, proxy, after, retries)
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
        if proxy and cause in ("connection", "timeout"):  # the connection was the proxy's
            self.add(url, "proxy", f"{proxy}: {what} (fetching {url}){after}", None, retries)
            return
        self.add(url, cause, f"{what} on {url}{after}", None, retries)

    def browser_failure(self, url: str, exc: Exception, proxy, after: str, retries) -> None:
        """A page the browser did not render: it did not settle in time (its wait_for never
        showed), the browser crashed, or the proxy it goes through failed."""
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        site = getattr(self.crawler.spider, "site", None)
        browser = getattr(site, "browser", None)
        if proxy and ("ERR_PROXY" in message or "ERR_TUNNEL" in message):
            self.add(url, "proxy", f"{proxy}: the browser could not use it ({message}) "
                     f"(fetching {url}){after}", None, retries)  # fmt: skip
        elif "Timeout" in type(exc).__name__ and browser is not None:
            never = f", and {browser.wait_for!r} never showed" if browser.wait_for else ""
            seconds = f"{browser.timeout_seconds:g} s"
            self.add(url, "browser", f"the page did not settle in the browser within {seconds}"
                     f"{never}: {url}{after}", None, retries)  # fmt: skip
        else:
            self.add(url, "browser", f"the browser failed on {url}: {message}{after}", None,
                     retries)  # fmt: skip

    def spider_closed(self, spider, reason: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            for letter in self.letters:
                out.write(json.dumps(letter, ensure_ascii=False) + "\n")
        tmp.replace(self.path)
