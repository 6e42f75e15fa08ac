"""(b) The json_api spider: records of a JSON API, pages followed as its pagination says."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import scrapy
from scrapy.http import TextResponse
from w3lib.url import canonicalize_url

from offpeak import jsonvalues
from offpeak.crawl import contract
from offpeak.scraping.secret import stored_url
from offpeak.scraping.spiders import pagination
from offpeak.scraping.spiders.base import ConfiguredSpider, on_readable_pages
from offpeak.scraping.spiders.fields import Finish


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
    in each record, pages followed as json_api.pagination says (spiders.pagination)."""

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

    @on_readable_pages
    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        cfg = self.site.section
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
