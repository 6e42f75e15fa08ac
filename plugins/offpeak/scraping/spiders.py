"""The three generic spider kinds; a site picks one with `kind:` and configures it in YAML."""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urljoin

import scrapy
from lxml import etree
from parsel import Selector
from parsel.csstranslator import HTMLTranslator
from scrapy.http import TextResponse
from w3lib.url import canonicalize_url

from offpeak import jsonvalues
from offpeak.crawl import contract
from offpeak.scraping import pagination
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
        """``(response, "", "")`` when the page decodes cleanly (UTF-8 bytes mislabelled as a
        single-byte charset are re-read as UTF-8); else ``(None, cause, why)``.

        Whether a page is whole is the transport's to say, not its end tags (HTML lets a page
        omit ``</body>`` and ``</html>``): DOWNLOAD_FAIL_ON_DATALOSS makes a body shorter than
        its Content-Length, or a chunked body without its last chunk, a failed request (a
        dead letter, guards.DeadLetters.failure); with it off, Scrapy flags it ``dataloss``.
        """
        url = stored_url(response.url)
        if "dataloss" in response.flags:
            why = (
                f"{url} was cut short: the connection closed before the end of its body "
                f"(after {len(response.body):,} bytes); none of its rows are stored"
            )
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
        self.header = HeaderCheck.of(self.site)

    def parse_rows(self, response: scrapy.http.Response, rows: Any) -> Any:
        """How this page's rows are read: ``item_from``, or, when the site names columns by
        header or checks the header, a reader of the columns found in this page's header row;
        a string (the reason) when the header does not match."""
        if self.header is None:
            return self.item_from
        resolved = self.header.resolve(response, rows)
        if isinstance(resolved, str):
            return resolved
        found, header_row = resolved

        def read(row: Selector, url: str) -> dict[str, Any] | None:
            if row.root is header_row:  # the row selector matches the header row too
                return None
            item = {name: reader(row) for name, reader in self.readers.items()}
            item.update(self.header.cells(row, found))
            if all(v is None for v in item.values()):
                return None
            return self.completed(item, url)

        return read

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
        read = self.parse_rows(response, rows) if rows else self.item_from
        if isinstance(read, str):  # the columns moved: no row of this page is read
            yield self.unreadable(response, read, "columns_moved")
            rows = []
        for row in rows:
            if row.root in not_data or (self.skip_text and self._text_skipped(row)):
                skipped += 1
                continue
            item = read(row, url)
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


def _collapsed(texts: list[str]) -> str:
    return " ".join(" ".join(texts).split())


def _by_position(row: Selector) -> list[Selector]:
    """The row's cells (td and th) by column position: a cell spanning n columns (colspan)
    stands at each of them."""
    cells: list[Selector] = []
    for cell in row.xpath("./td|./th"):
        span = cell.attrib.get("colspan", "1")
        cells += [cell] * (int(span) if span.isdigit() and 0 < int(span) < 1000 else 1)
    return cells


class HeaderCheck:
    """An html_table's columns read from each page's header row: fields with ``column`` find
    their cell by header text, and ``html_table.header`` says which text each numbered column
    must have. A page whose header does not match is unreadable, naming the column."""

    def __init__(self, site: CrawlSite) -> None:
        cfg = site.section
        self.header_row = getattr(cfg, "header_row", None)
        self.expected = {int(k): v for k, v in (getattr(cfg, "header", None) or {}).items()}
        self.columns = {name: spec.column for name, spec in site.fields.items() if spec.column}
        self.specs = {name: site.fields[name] for name in self.columns}
        self.finish = {n: Finish(s) for n, s in self.specs.items() if Finish.wanted(s)}

    @classmethod
    def of(cls, site: CrawlSite) -> HeaderCheck | None:
        check = cls(site)
        return check if check.expected or check.columns else None

    def header_of(self, response: scrapy.http.Response, rows: Any) -> Selector | None:
        """The page's header row."""
        if self.header_row:
            found = response.css(self.header_row)
        else:  # the first row of <th> cells in the table of the first data row
            found = rows[0].xpath("ancestor::table[1]").xpath(".//tr[th][1]")
        return found[0] if found else None

    def resolve(
        self, response: scrapy.http.Response, rows: Any
    ) -> tuple[dict[str, int], Any] | str:
        """({field: column index} for the ``column`` fields, the header row's element), or
        why the header does not match (a reason naming the column and what the page has)."""
        header = self.header_of(response, rows)
        if header is None:
            where = (
                f"html_table.header_row {self.header_row!r} matches nothing"
                if self.header_row
                else "no row of <th> cells in the table (set html_table.header_row)"
            )
            return f"no header row to check the table's columns by: {where}"
        # The header cells' texts by column position (whitespace runs as one space).
        texts = [_collapsed(c.xpath(".//text()").getall()) for c in _by_position(header)]
        problems, found = [], {}
        for pos, want in sorted(self.expected.items()):
            got = texts[pos - 1] if pos <= len(texts) else None
            if got != want:
                now = [i + 1 for i, t in enumerate(texts) if t == want]
                where = f"it is now column {now[0]}" if now else "no column has that header"
                problems.append(
                    f"column {pos} is headed {got!r}, not {want!r} (html_table.header): "
                    f"column {want!r} moved, {where}"
                )
        for name, want in self.columns.items():
            at = [i for i, t in enumerate(texts) if t == want]
            if len(at) == 1:
                found[name] = at[0]
            elif not at:
                problems.append(f"field {name}: no column is headed {want!r}")
            else:
                columns = ", ".join(str(i + 1) for i in at)
                problems.append(f"field {name}: columns {columns} are all headed {want!r}")
        if problems:
            return (
                "its table header does not match the site's columns: "
                f"{'; '.join(problems)}; its header row reads {texts}. None of its rows are "
                "stored: read by position, a moved column gives another column's values"
            )
        return found, header.root

    def cells(self, row: Selector, found: dict[str, int]) -> dict[str, str | None]:
        """Each ``column`` field's text in ``row``: its cell's whole text as the document
        holds it (XPath's string value: ``RFC 7231</a>, Section 6.2`` stays ``RFC 7231,
        Section 6.2``, where joining the pieces would put a space before the comma)."""
        cells = _by_position(row)
        values: dict[str, str | None] = {}
        for name, index in found.items():
            text = None
            if index < len(cells):
                text = _joined(cells[index].xpath(".//text()").getall(), "")
            finish = self.finish.get(name)
            values[name] = text if finish is None else finish(text, row)
        return values


def json_body(response: TextResponse) -> Any:
    """``response.json()``, every number exact: a fraction or exponent as a Decimal, never a
    float (offpeak.jsonvalues); UTF-8, -16 or -32 as JSON requires, else the response's
    charset, as Scrapy decodes it."""
    try:
        return jsonvalues.loads(response.body)
    except UnicodeDecodeError:
        return jsonvalues.loads(response.text)


class JsonApiSpider(ConfiguredSpider):
    """(b) A JSON API: records at a dotted path (or the body itself), fields by dotted paths
    in each record, pages followed as json_api.pagination says (offpeak.scraping.pagination)."""

    name = "json_api"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paths = {n: s.path for n, s in self.site.fields.items() if s.path}
        self.finishes = {n: Finish(s) for n, s in self.site.fields.items() if s.path and s.re}
        self.json_fields = {n for n, s in self.site.fields.items() if s.type == "json"}
        # Text fields whose whitespace-only strings are nothing found (the default applies):
        # collapsed ones; a kept field stores such a string as it is (normalize.to_kept_text).
        self.collapsed = {
            n
            for n, s in self.site.fields.items()
            if s.type == "text" and s.whitespace == "collapse"
        }
        self.fetched: set[str] = set()  # canonical URLs requested: the pagination loop guard

    def json_value(self, record: Any, name: str) -> Any:
        """The value at the field's path as the feed carries it, exactly: a json field's as
        its JSON text; in a field of another type, a number with a fraction or exponent
        written out in full (never through a float), an object or array as its JSON text,
        the empty string (and, in a collapsed text field, a string of only whitespace) as
        nothing found: the field's ``default`` applies. With ``re``, the text
        it finds in a string, or in any other value's JSON text (``false``, ``12.50``)."""
        value = pagination.dig(record, self.paths[name])
        if value is None:
            return None
        finish = self.finishes.get(name)
        if finish is not None:
            return finish(value if isinstance(value, str) else jsonvalues.dumps(value), None)
        if name in self.json_fields:
            return jsonvalues.dumps(value)
        if isinstance(value, Decimal):
            return jsonvalues.plain_number(value)
        if isinstance(value, dict | list):
            return jsonvalues.dumps(value)
        if value == "" or (name in self.collapsed and isinstance(value, str) and value.isspace()):
            return None
        return value

    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        cfg = self.site.section
        checked, cause, why = self.readable(response)
        if checked is None:
            yield self.unreadable(response, why, cause)
            return
        response = checked
        try:
            data = json_body(response)
        except ValueError as exc:
            yield self.unreadable(response, f"response is not JSON: {exc}")
            return
        records = pagination.dig(data, cfg.records)
        if not isinstance(records, list):
            where = "the response" if cfg.records == pagination.TOP_LEVEL else repr(cfg.records)
            got = "nothing" if records is None else f"a JSON {_json_kind(records)}"
            yield self.unreadable(response, f"json_api.records: {where} is {got}, not a list")
            return
        url = stored_url(response.url)
        for record in records:
            item = {name: self.json_value(record, name) for name in self.paths}
            yield self.completed(item, url)
        yield from self.paginate(response, data, len(records))

    # ------------------------------------------------------------------ pagination

    def start_urls_for_run(self) -> list[str]:
        paging = self.site.section.pagination
        return [pagination.first_url(paging, url) for url in super().start_urls_for_run()]

    def request(self, url: str, **kwargs: Any) -> scrapy.Request:
        """Every request, its URL remembered: a next page pointing back to one is a loop."""
        self.fetched.add(canonicalize_url(url))
        return super().request(url, **kwargs)

    def paginate(self, response: scrapy.http.Response, data: Any, records: int) -> Iterator[Any]:
        """The request of the page after ``response`` under json_api.pagination, if any; a
        loop, the max_pages limit or unusable paging data is named in a dead letter."""
        paging = self.site.section.pagination
        at = pagination.Position.of(response.meta)
        step = pagination.next_step(
            paging, response.url, data, records, at,
            lambda name: [v.decode("latin-1") for v in response.headers.getlist(name)],
        )  # fmt: skip
        page = stored_url(response.url)
        if isinstance(step, pagination.Problem):
            self.dead_letter(response, step.cause, step.reason)
            return
        if step is None:
            return
        nxt = stored_url(step.url)
        if at.index >= paging["max_pages"]:
            why = (
                f"json_api.pagination.max_pages {paging['max_pages']} reached at {page}: the next "
                f"page {nxt} ({step.how}) is not fetched"
            )
            if paging["on_max_pages"] == "complete":
                self.crawler.stats.inc_value(contract.PAGINATION_CAPPED)
                self.logger.info("%s (on_max_pages: complete)", why)
            else:
                self.dead_letter(response, pagination.MAX_PAGES, why)
            return
        if canonicalize_url(step.url) in self.fetched:
            self.dead_letter(response, pagination.LOOP, (
                f"pagination loop: {page} gives {nxt} as its next page ({step.how}), a page "
                "this crawl already requested; the pages after it are not fetched"
            ))  # fmt: skip
            return
        self.crawler.stats.set_value(contract.NEXT_PAGE, nxt)
        meta = step.position.as_meta()
        if step.speculative:
            meta["offpeak_speculative"] = True  # a 404 here is the end of the list
        yield self.request(step.url, callback=self.parse, meta=meta)

    def dead_letter(self, response: scrapy.http.Response, cause: str, reason: str) -> None:
        dead_letters = getattr(self.crawler, "dead_letters", None)
        if dead_letters is not None:  # counts the cause too: the crawl is incomplete
            dead_letters.add(response.url, cause, reason, response.status)
        else:
            self.crawler.stats.inc_value(contract.INCOMPLETE_PREFIX + cause)
            self.logger.warning("Dead letter: %s", reason)


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "number"


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
