"""Requests Scrapy drops without an errback: each named, a dead letter when a page is lost."""

# Scrapy's scheduler refuses a request whose fingerprint it has seen (the duplicate filter) and
# only sends the request_dropped signal: no errback, one DEBUG line for the first. Which drops
# lose a page:
#   - a redirect target (the request carries redirect_urls): the page first asked for never
#     arrives. Back to a URL of its own chain (A -> B -> A) or to one the crawl requested
#     before: either way a redirect loop, a dead letter naming the chain (partial crawl);
#   - a next page (the spider's `parse` callback, asked for from a page) that leads back to a
#     page already requested: a pagination loop, a dead letter (partial crawl): what follows
#     the loop was never listed;
#   - anything else is a link to a page this crawl already requested (the same detail page
#     linked twice, a start URL given twice): the page is read once, nothing is lost. Counted
#     in offpeak/duplicate_requests and logged, never a dead letter, so it cannot make every
#     crawl partial.
# Off-site requests are the OnSite middleware's (offpeak.scraping.middlewares), which names
# each one.

from __future__ import annotations

import logging
from dataclasses import dataclass

from scrapy import signals
from w3lib.url import canonicalize_url

from offpeak.crawl import contract
from offpeak.scraping.secret import stored_url

log = logging.getLogger("offpeak.dropped")
# Harmless duplicates named one by one at INFO; the rest at DEBUG (the count is in the stats).
SHOWN = 10


@dataclass(frozen=True)
class Drop:
    """What a dropped request means: ``cause`` None for a harmless duplicate."""

    url: str
    cause: str | None
    reason: str


def _same(a: str, b: str) -> bool:
    return canonicalize_url(a) == canonicalize_url(b)


def judge_drop(
    url: str,
    redirect_urls: list[str] | None = None,
    referer: str | None = None,
    next_page: bool = False,
) -> Drop:
    """Name a request the duplicate filter dropped: ``url`` the request's, ``redirect_urls``
    the URLs it was redirected from (Scrapy's meta), ``referer`` the page that linked to it,
    ``next_page`` whether it is the next page of a listing."""
    if redirect_urls:
        first = stored_url(redirect_urls[0])
        chain = " -> ".join(stored_url(u) for u in [*redirect_urls, url])
        if any(_same(url, u) for u in redirect_urls):
            why = "back to a URL of its own chain"
        else:
            why = f"to {stored_url(url)}, which this crawl had already requested"
        return Drop(
            first,
            "redirect_loop",
            f"redirect loop at {first}: {chain} redirects {why}; Scrapy's duplicate filter "
            f"dropped the repeat, so the page at {first} was never read",
        )
    target = stored_url(url)
    came = f" linked from {stored_url(referer)}" if referer else ""
    if next_page:
        return Drop(
            target,
            "pagination_loop",
            f"pagination loop: the next page{came} is {target}, which this crawl had already "
            "requested; the pages after it were never listed",
        )
    return Drop(target, None, f"{target}{came} was already requested by this crawl: read once")


class DroppedRequests:
    """Extension: name every request the scheduler drops (request_dropped, Scrapy's duplicate
    filter): a lost page is a dead letter with its cause (the crawl is then partial), a
    harmless duplicate link is counted in ``offpeak/duplicate_requests`` and logged."""

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self.harmless = 0

    @classmethod
    def from_crawler(cls, crawler):
        ext = cls(crawler)
        crawler.signals.connect(ext.request_dropped, signal=signals.request_dropped)
        return ext

    def request_dropped(self, request, spider=None) -> None:
        referer = request.headers.get("Referer")
        callback = getattr(request.callback, "__name__", None)
        drop = judge_drop(
            request.url,
            request.meta.get("redirect_urls"),
            referer.decode("latin-1") if referer else None,
            # A listing's or an API's next page is asked for from a page with the spider's
            # parse (a start URL has no referer; detail pages have a callback of their own).
            next_page=callback == "parse" and referer is not None,
        )
        stats = self.crawler.stats
        if drop.cause is None:
            self.harmless += 1
            stats.inc_value(contract.DUPLICATE_REQUESTS)
            level = logging.INFO if self.harmless <= SHOWN else logging.DEBUG
            log.log(level, "Duplicate request not sent (harmless): %s", drop.reason)
            return
        dead_letters = getattr(self.crawler, "dead_letters", None)
        if dead_letters is not None:
            dead_letters.add(drop.url, drop.cause, drop.reason)
        else:
            stats.inc_value(contract.INCOMPLETE_PREFIX + drop.cause)
            log.warning("Dropped request: %s", drop.reason)
