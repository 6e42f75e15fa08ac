"""The spiders' base: the site handed over, its start URLs, readable pages, dead letters."""

from __future__ import annotations

import codecs
import functools
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote, urljoin

import scrapy
from scrapy.http import TextResponse

from offpeak import jsonvalues
from offpeak.crawl import contract
from offpeak.scraping import browser
from offpeak.scraping.secret import stored_url
from offpeak.scraping.siteconfig import CrawlSite, crawl_site
from offpeak.scraping.spiders.fields import FieldReader

# Codecs that decode any byte string: text in them cannot fail to decode, only be wrong.
SINGLE_BYTE = frozenset({"cp1252", "latin-1", "iso8859-1", "iso8859-15", "cp1250"})


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _charset_source(response: TextResponse) -> str:
    """What declared the charset a response is read in (named in warnings and dead letters)."""
    if response._headers_encoding():
        return "Content-Type header"
    if response._bom_encoding():
        return "byte-order mark"
    if response._body_declared_encoding():
        return "<meta> charset"
    return "charset detection"


def on_readable_pages(parse: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """A spider callback run only on a page that is readable (ConfiguredSpider.readable),
    and given the page as read (re-read as UTF-8 where its label was wrong); an unreadable
    page gives the record that stands for it instead (ConfiguredSpider.unreadable)."""

    @functools.wraps(parse)
    def on_page(self, response: scrapy.http.Response, *args: Any, **kwargs: Any):
        checked, cause, why = self.readable(response)
        if checked is None:
            yield self.unreadable(response, why, cause)
            return
        yield from parse(self, checked, *args, **kwargs)

    return on_page


class ConfiguredSpider(scrapy.Spider):
    """Base: the site's config (as ScrapeOperator validated it, offpeak.scraping.siteconfig),
    and its start URLs for one region and trading date."""

    def __init__(
        self,
        site: str,
        region: str,
        trading_date: str,
        base_url: str,
        *args: Any,
        start_urls: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.site: CrawlSite = crawl_site(site)
        if self.site.kind != self.name:
            raise ValueError(f"site {site!r} is kind {self.site.kind!r}, not {self.name!r}")
        self.readers = {
            name: FieldReader(spec)
            for name, spec in self.site.fields.items()
            if spec.css or spec.xpath
        }
        # Added after the fields found: constants, then defaults where nothing was found.
        self.fixed = {
            name: spec.const for name, spec in self.site.fields.items() if spec.const is not None
        }
        self.defaults = {
            name: jsonvalues.dumps(spec.default)  # a boolean as JSON writes it: true, false
            if isinstance(spec.default, bool)
            else str(spec.default)
            for name, spec in self.site.fields.items()
            if spec.default is not None and spec.const is None
        }
        self.region = region
        self.trading_date = trading_date
        self.base_url = base_url.rstrip("/") + "/"
        # A subset of the site's start URL templates (JSON list), from the run's params.
        self.only_start_urls = json.loads(start_urls) if start_urls else None

    def start_urls_for_run(self) -> list[str]:
        api_key = quote(os.environ.get(contract.API_KEY_ENV, ""), safe="")
        return [
            urljoin(
                self.base_url,
                t.format(region=self.region, trading_date=self.trading_date, api_key=api_key),
            )
            for t in self.site.start_urls
            if self.only_start_urls is None or t in self.only_start_urls
        ]

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.start_urls_for_run():
            self.logger.info("Start URL: %s", stored_url(url))
            yield self.request(url, callback=self.parse)

    def next_page(self, response: scrapy.http.Response, css: str | None) -> Iterator[Any]:
        """The request of the page ``css`` links to, if it links to one (noted in the stats)."""
        if css and (href := response.css(css).get()):
            self.crawler.stats.set_value(contract.NEXT_PAGE, stored_url(response.urljoin(href)))
            yield self.follow(response, href, callback=self.parse)

    def request(self, url: str, **kwargs: Any) -> scrapy.Request:
        """Every request names what became of it: a failure is a dead letter."""
        return scrapy.Request(url, errback=self.failed, **self.rendered(kwargs))

    def follow(self, response: scrapy.http.Response, href: str, **kwargs: Any) -> scrapy.Request:
        return response.follow(href, errback=self.failed, **self.rendered(kwargs))

    def rendered(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with the browser asked for when the site renders this page's role (a
        detail page is one its ``parse_detail`` reads; offpeak.scraping.browser.page_meta)."""
        if self.site.browser is None:
            return kwargs
        callback = getattr(kwargs.get("callback"), "__name__", "")
        role = "detail" if callback == "parse_detail" else "listing"
        extra = browser.page_meta(self.site.browser, role)
        return {**kwargs, "meta": {**kwargs.get("meta", {}), **extra}} if extra else kwargs

    def failed(self, failure) -> None:
        from scrapy.spidermiddlewares.httperror import HttpError

        exc = failure.value
        speculative = failure.request.meta.get("offpeak_speculative")
        if speculative and isinstance(exc, HttpError) and exc.response.status == 404:
            return  # a page past the last of a page-numbered API: the end, not a loss
        dead_letters = getattr(self.crawler, "dead_letters", None)
        if dead_letters is not None:
            dead_letters.failure(failure)
        else:
            self.logger.error("Request failed: %s", failure.getErrorMessage())

    def readable(self, response: scrapy.http.Response) -> tuple[Any, str, str]:
        """``(response, "", "")`` when the page decodes cleanly (UTF-8 bytes mislabelled as a
        single-byte charset are re-read as UTF-8); else ``(None, cause, why)``.

        Whether a page is whole is the transport's to say, not its end tags (HTML lets a page
        omit ``</body>`` and ``</html>``): DOWNLOAD_FAIL_ON_DATALOSS makes a body shorter than
        its Content-Length, or a chunked body without its last chunk, a failed request (a
        dead letter, DeadLetters.failure); with it off, Scrapy flags it ``dataloss``.
        """
        url = stored_url(response.url)
        why = self.cut_short(response)
        if why:
            return None, "truncated", why
        if not isinstance(response, TextResponse):
            return response, "", ""
        name = codecs.lookup(response.encoding).name
        body = response.body
        if name in SINGLE_BYTE and not body.isascii() and _is_utf8(body):
            source = _charset_source(response)
            # Multi-byte UTF-8 sequences do not occur by chance in real single-byte text: the
            # label is wrong, and reading the page as labelled would store mojibake.
            self.crawler.stats.inc_value(contract.CHARSET_RECOVERED)
            self.logger.warning(
                "%s declares %s (%s) but its bytes are valid UTF-8: read as UTF-8",
                url, name, source,
            )  # fmt: skip
            response = response.replace(encoding="utf-8")
        else:
            try:
                body.decode(name)
            except UnicodeDecodeError as exc:
                why = (
                    f"bytes {exc.start}-{exc.end} of {url} are not valid {name}, the charset "
                    f"its {_charset_source(response)} declares: the page is not stored rather "
                    "than stored garbled"
                )
                return None, "charset", why
        return response, "", ""

    def cut_short(self, response: scrapy.http.Response) -> str | None:
        """Why ``response`` is not whole (Scrapy flagged it ``dataloss``), or None."""
        if "dataloss" not in response.flags:
            return None
        return (
            f"{stored_url(response.url)} was cut short: the connection closed before the end "
            f"of its body (after {len(response.body):,} bytes); none of its rows are stored"
        )

    def item_from(self, selector: scrapy.Selector, url: str) -> dict[str, Any] | None:
        """The fields found in ``selector``; ``url`` is the page's stored URL (stored_url)."""
        item = {name: read(selector) for name, read in self.readers.items()}
        if all(v is None for v in item.values()):
            return None  # header or spacer row, nothing to keep
        return self.completed(item, url)

    def completed(self, item: dict[str, Any], url: str) -> dict[str, Any]:
        """``item`` with the site's constants, its defaults where nothing was found, and the
        page's stored URL."""
        if self.fixed:
            item.update(self.fixed)
        for name, default in self.defaults.items():
            if item.get(name) is None:
                item[name] = default
        item["_url"] = url
        return item

    def unreadable(
        self, response: scrapy.http.Response, why: str, cause: str = "unreadable_page"
    ) -> dict[str, Any]:
        """A record standing for a page we could not read; transform quarantines it, and the
        crawl is incomplete."""
        url = stored_url(response.url)
        self.crawler.stats.inc_value(contract.UNREADABLE_PAGES)
        dead_letters = getattr(self.crawler, "dead_letters", None)
        if dead_letters is not None:  # counts the cause too: the crawl is incomplete
            dead_letters.add(url, cause, f"unreadable page {url}: {why}", response.status)
        else:
            self.crawler.stats.inc_value(contract.INCOMPLETE_PREFIX + cause)
        return {"_url": url, "_error": why}
