"""The three generic spider kinds; a site picks one with `kind:` and configures it in YAML."""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, urljoin

import scrapy
from lxml import etree
from parsel import Selector
from parsel.csstranslator import HTMLTranslator
from scrapy.http import HtmlResponse, TextResponse
from w3lib.url import add_or_replace_parameter

from offpeak.crawl import contract
from offpeak.scraping.guards import stored_url
from offpeak.scraping.siteconfig import CrawlSite, Locator, crawl_site

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


def dig(data: Any, path: str) -> Any:
    """Follow a dotted path (``data.rates``, ``venue.name``, ``items.0.id``) or return None."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _joined(found: list[str], sep: str) -> str | None:
    """The matches joined; None when there are none or they hold only whitespace (an XPath
    string function such as ``substring-before()`` gives "" when it finds nothing)."""
    text = sep.join(found) if found else None
    return text if text and not text.isspace() else None


def extract(selector: scrapy.Selector, spec: Locator) -> str | None:
    """All text the field's selector matches, joined; None when it matches nothing."""
    found = selector.css(spec.css).getall() if spec.css else selector.xpath(spec.xpath).getall()
    return _joined(found, spec.join)


# A text already written negative: a minus sign the number reader knows (the crawl does not
# import it: offpeak.pipeline.normalize.MINUS_SIGNS, held equal by test_field_extraction),
# or an accounting "(1.20)".
NEGATIVE_STARTS = ("-", "\u2212", "\u2012", "\u2013", "(")


class Finish:
    """What a field's ``re``, ``negative_when`` and ``default`` make of the text found."""

    __slots__ = ("default", "negative", "pattern")

    def __init__(self, spec: Locator) -> None:
        self.pattern = re.compile(spec.re) if spec.re else None
        self.negative = spec.negative_when
        self.default = None if spec.default is None else str(spec.default)

    def __call__(self, text: str | None, selector: Any) -> str | None:
        if text is not None and self.pattern is not None:
            found = self.pattern.search(text)
            text = None if found is None else found.group(1 if self.pattern.groups else 0)
            text = text if text and not text.isspace() else None
        if text is not None and self.negative and selector.css(self.negative):
            stripped = text.strip()
            if not stripped.startswith(NEGATIVE_STARTS):
                text = "-" + stripped
        return text

    @staticmethod
    def wanted(spec: Locator) -> bool:
        return bool(spec.re or spec.negative_when)


class FieldReader:
    """``extract`` for one field, its locator compiled once.

    parsel wraps every match in a Selector and serializes it back; for the usual locator,
    whose matches are text (``::text``, ``::attr()``, ``text()``, ``@attr``), that is most of
    a crawl's time per item. The compiled XPath (the same query parsel would run, CSS
    translated by parsel's translator) gives that text directly; any other match (elements,
    numbers) and any non-HTML selector go through ``extract``, so the value is always parsel's.
    The field's ``re`` and ``negative_when`` then apply (``default``: ConfiguredSpider).
    """

    __slots__ = ("finish", "spec", "xpath")
    translator = HTMLTranslator()

    def __init__(self, spec: Locator) -> None:
        self.spec = spec
        query = self.translator.css_to_xpath(spec.css) if spec.css else spec.xpath
        self.xpath = etree.XPath(
            query, namespaces=Selector._default_namespaces, smart_strings=False
        )
        self.finish = Finish(spec) if Finish.wanted(spec) else None

    def __call__(self, selector: Any) -> str | None:
        if not isinstance(selector, Selector):
            selector = selector.selector  # a response
        text = self._text(selector)
        return text if self.finish is None else self.finish(text, selector)

    def _text(self, selector: Selector) -> str | None:
        if selector.type == "html":
            found = self.xpath(selector.root)
            if found.__class__ is list and all(v.__class__ is str for v in found):
                return _joined(found, self.spec.join)
        return extract(selector, self.spec)


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
            name: str(spec.default)
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
        return scrapy.Request(url, errback=self.failed, **kwargs)

    def follow(self, response: scrapy.http.Response, href: str, **kwargs: Any) -> scrapy.Request:
        return response.follow(href, errback=self.failed, **kwargs)

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
        """``(response, "", "")`` when the page decodes cleanly and is whole (UTF-8 bytes
        mislabelled as a single-byte charset are re-read as UTF-8); else
        ``(None, cause, why)``."""
        if not isinstance(response, TextResponse):
            return response, "", ""
        url = stored_url(response.url)
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
        if isinstance(response, HtmlResponse):
            tail = body[-4096:].lower()
            if b"</html>" not in tail and b"</body>" not in tail:
                return (
                    None,
                    "truncated",
                    (
                        f"{url} ends after {len(body):,} bytes without </body> or </html>: a "
                        "truncated document; none of its rows are stored"
                    ),
                )
        return response, "", ""

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


class HtmlTableSpider(ConfiguredSpider):
    """(a) Rows of an HTML table spread over pages linked by a "next" link."""

    name = "html_table"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        skip_text = getattr(self.site.section, "skip_text", None)
        self.skip_text = re.compile(skip_text) if skip_text else None

    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        cfg = self.site.section
        checked, cause, why = self.readable(response)
        if checked is None:
            yield self.unreadable(response, why, cause)
            return
        response = checked
        url = stored_url(response.url)
        rows = response.css(cfg.rows)
        if not rows:
            yield self.unreadable(response, f"no rows match {cfg.rows!r}")
        elif rows[-1].root.tag == "tr" and (after := rows[-1].xpath("following-sibling::tr")):
            # The row selector stopped matching mid-table: what follows would be lost unseen.
            self.crawler.stats.inc_value(contract.INCOMPLETE_PREFIX + "rows_unmatched")
            self.logger.warning(
                "%s: %d table rows after the last one %r matches are not read",
                url, len(after), cfg.rows,
            )  # fmt: skip
        skipped = 0
        not_data = {s.root for css in getattr(cfg, "skip_rows", ()) for s in response.css(css)}
        for row in rows:
            if row.root in not_data or (self.skip_text and self._text_skipped(row)):
                skipped += 1
                continue
            item = self.item_from(row, url)
            if item is None:
                skipped += 1
            else:
                yield item
        if skipped:
            self.crawler.stats.inc_value(contract.ROWS_SKIPPED, skipped)
        yield from self.next_page(response, cfg.next_page)

    def _text_skipped(self, row: Selector) -> bool:
        """Whether ``skip_text`` is found in the row's text (whitespace runs as one space)."""
        text = " ".join(" ".join(row.xpath(".//text()").getall()).split())
        return self.skip_text.search(text) is not None


class JsonApiSpider(ConfiguredSpider):
    """(b) A JSON API paged by cursor or page number; fields located by dotted paths."""

    name = "json_api"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paths = {n: s.path for n, s in self.site.fields.items() if s.path}
        self.finishes = {n: Finish(s) for n, s in self.site.fields.items() if s.path and s.re}

    def json_value(self, record: Any, name: str) -> Any:
        """The value at the field's path; with ``re``, the text it finds in it."""
        value = dig(record, self.paths[name])
        finish = self.finishes.get(name)
        if finish is None or value is None:
            return value
        return finish(value if isinstance(value, str) else json.dumps(value), None)

    def parse(self, response: scrapy.http.Response, page: int = 1) -> Iterator[Any]:
        cfg = self.site.section
        checked, cause, why = self.readable(response)
        if checked is None:
            yield self.unreadable(response, why, cause)
            return
        response = checked
        try:
            data = response.json()
        except ValueError as exc:
            yield self.unreadable(response, f"response is not JSON: {exc}")
            return
        records = dig(data, cfg.records)
        if not isinstance(records, list):
            yield self.unreadable(response, f"{cfg.records!r} is not a list in the response")
            return
        url = stored_url(response.url)
        for record in records:
            item = {name: self.json_value(record, name) for name in self.paths}
            yield self.completed(item, url)
        if cfg.pagination == "cursor":
            cursor = dig(data, cfg.cursor_path)
            if cursor:
                url = add_or_replace_parameter(response.url, cfg.cursor_param, str(cursor))
                yield self.request(url, callback=self.parse)
        elif cfg.pagination == "page" and records:
            url = add_or_replace_parameter(response.url, cfg.page_param, str(page + 1))
            yield self.request(
                url, callback=self.parse, cb_kwargs={"page": page + 1},
                meta={"offpeak_speculative": True},  # a 404 here is the end of the list
            )  # fmt: skip


class ListingDetailSpider(ConfiguredSpider):
    """(c) Listing pages whose rows link to detail pages that hold the fields."""

    name = "listing_detail"

    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        cfg = self.site.section
        checked, cause, why = self.readable(response)
        if checked is None:
            yield self.unreadable(response, why, cause)
            return
        response = checked
        links = response.css(cfg.links).getall()
        if not links:
            yield self.unreadable(response, f"no detail links match {cfg.links!r}")
        for href in links:
            yield self.follow(response, href, callback=self.parse_detail)
        yield from self.next_page(response, cfg.next_page)

    def parse_detail(self, response: scrapy.http.Response) -> Iterator[Any]:
        checked, cause, why = self.readable(response)
        if checked is None:
            yield self.unreadable(response, why, cause)
            return
        response = checked
        item = self.item_from(response, stored_url(response.url))
        yield item if item is not None else self.unreadable(response, "no field matched")
