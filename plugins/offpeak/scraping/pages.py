"""The pages a crawl keeps, so that a later try of a killed crawl reads them instead of fetching
them again (offpeak.crawl.resume carries them to and from the data root).

Scrapy's own HttpCacheMiddleware does the work, with the storage and policy below: one file per
answered page, named by the request's fingerprint and written whole or not at all (a SIGKILL
leaves no half page that a later try would read), and only 2xx answers kept (an error page,
a throttle or a redirect is asked again). Scrapy's JOBDIR is not used: its request queue writes
its index only when the crawl closes, so a killed crawl's queue cannot be read back.

A kept page is re-parsed by the later try like a fetched one, so its items, its links and its
dead letters come out exactly as the first time, and the feed is written whole by the try that
publishes it (each key once).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.extensions.httpcache import DummyPolicy
from scrapy.http import Headers
from scrapy.responsetypes import responsetypes

from offpeak.crawl.contract import PAGE_JOURNAL, PAGE_SUFFIX
from offpeak.scraping.secret import stored_url

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.http import Response
    from scrapy.settings import BaseSettings

log = logging.getLogger(__name__)


class KeepAnswered(DummyPolicy):
    """Keep only pages the site answered with a 2xx; a kept page is always used."""

    def should_cache_response(self, response: Response, request: Request) -> bool:
        return 200 <= response.status < 300


class PageFiles:
    """``<HTTPCACHE_DIR>/<request fingerprint>.page``: gzip of one JSON line (url, status,
    headers) and the body as the site sent it (still content-encoded: Scrapy's
    decompression runs after the cache, for a kept page as for a fetched one). Each new
    page's file name is then appended to the folder's journal, which the task reads to copy
    new pages to the data root without listing the folder."""

    def __init__(self, settings: BaseSettings) -> None:
        self.folder = Path(settings["HTTPCACHE_DIR"])
        self.kept: set[str] = set()

    def open_spider(self, spider: Spider) -> None:
        self.fingerprint = spider.crawler.request_fingerprinter.fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        self.kept = {p.name for p in self.folder.glob(f"*{PAGE_SUFFIX}")}
        self.journal = open(self.folder / PAGE_JOURNAL, "a", encoding="utf-8")  # noqa: SIM115
        if self.kept:
            log.info(
                "%d page(s) kept by an earlier try of this crawl: read from %s, not fetched",
                len(self.kept), self.folder,
            )  # fmt: skip

    def close_spider(self, spider: Spider) -> None:
        self.journal.close()

    def _name(self, request: Request) -> str:
        return self.fingerprint(request).hex() + PAGE_SUFFIX

    def retrieve_response(self, spider: Spider, request: Request) -> Response | None:
        name = self._name(request)
        if name not in self.kept:  # only an earlier try's pages: no file lookup per new page
            return None
        # The request's own URL: the file holds it without the site's secret (stored_url).
        return read_page(self.folder / name, url=request.url)

    def store_response(self, spider: Spider, request: Request, response: Response) -> None:
        name = self._name(request)
        write_page(self.folder / name, response)
        self.journal.write(name + "\n")
        self.journal.flush()  # a line at a time: the task copies each page as it comes


def write_page(path: Path, response: Response) -> None:
    """Write ``response`` to ``path`` through a hidden temporary file and a rename."""
    head = {
        "url": stored_url(response.url),  # the data root never holds the site's secret
        "status": response.status,
        "headers": {
            k.decode("latin-1"): [v.decode("latin-1") for v in vs]
            for k, vs in response.headers.items()
        },
    }
    tmp = path.with_name(f".{path.name}.tmp")
    with gzip.open(tmp, "wb", compresslevel=1) as fh:
        fh.write(json.dumps(head).encode() + b"\n")
        fh.write(response.body)
    os.replace(tmp, path)


def read_page(path: Path, url: str | None = None) -> Response:
    """The response a page file holds (write_page), at ``url`` (the request it answers, whose
    URL may carry the secret the file leaves out) or else the URL the file holds."""
    with gzip.open(path, "rb") as fh:
        head = json.loads(fh.readline())
        body = fh.read()
    headers = Headers(head["headers"])
    url = url or head["url"]
    cls = responsetypes.from_args(headers=headers, url=url, body=body)
    return cls(url=url, status=head["status"], headers=headers, body=body)
