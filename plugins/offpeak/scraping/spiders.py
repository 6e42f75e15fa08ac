"""The three generic spider kinds; a site picks one with `kind:` and configures it in YAML."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, urljoin

import scrapy
from w3lib.url import add_or_replace_parameter

from offpeak.config import FieldSpec, Site, get_site


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


def extract(selector: scrapy.Selector, spec: FieldSpec) -> str | None:
    """All text the field's selector matches, joined; None when it matches nothing."""
    found = selector.css(spec.css).getall() if spec.css else selector.xpath(spec.xpath).getall()
    return " ".join(found) if found else None


class ConfiguredSpider(scrapy.Spider):
    """Base: reads the site's YAML, resolves start URLs for one region and trading date."""

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
        self.site: Site = get_site(site)[0]
        if self.site.kind != self.name:
            raise ValueError(f"site {site!r} is kind {self.site.kind!r}, not {self.name!r}")
        self.region = region
        self.trading_date = trading_date
        self.base_url = base_url.rstrip("/") + "/"
        # A subset of the site's start URL templates (JSON list), from the run's params.
        self.only_start_urls = json.loads(start_urls) if start_urls else None

    def start_urls_for_run(self) -> list[str]:
        api_key = quote(os.environ.get("OFFPEAK_API_KEY", ""), safe="")
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
            self.logger.info("Start URL: %s", url)
            yield scrapy.Request(url, callback=self.parse)

    def item_from(self, selector: scrapy.Selector, url: str) -> dict[str, Any] | None:
        item = {name: extract(selector, spec) for name, spec in self.site.fields.items()}
        if all(v is None for v in item.values()):
            return None  # header or spacer row, nothing to keep
        item["_url"] = url
        return item

    def unreadable(self, response: scrapy.http.Response, why: str) -> dict[str, Any]:
        """A record standing for a page we could not read; transform quarantines it."""
        self.crawler.stats.inc_value("offpeak/unreadable_pages")
        self.logger.warning("Unreadable page %s: %s", response.url, why)
        return {"_url": response.url, "_error": why}


class HtmlTableSpider(ConfiguredSpider):
    """(a) Rows of an HTML table spread over pages linked by a "next" link."""

    name = "html_table"

    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        cfg = self.site.html_table
        rows = response.css(cfg.rows)
        if not rows:
            yield self.unreadable(response, f"no rows match {cfg.rows!r}")
        for row in rows:
            item = self.item_from(row, response.url)
            if item is not None:
                yield item
        if cfg.next_page and (href := response.css(cfg.next_page).get()):
            yield response.follow(href, callback=self.parse)


class JsonApiSpider(ConfiguredSpider):
    """(b) A JSON API paged by cursor or page number; fields located by dotted paths."""

    name = "json_api"

    def parse(self, response: scrapy.http.Response, page: int = 1) -> Iterator[Any]:
        cfg = self.site.json_api
        try:
            data = response.json()
        except ValueError as exc:
            yield self.unreadable(response, f"response is not JSON: {exc}")
            return
        records = dig(data, cfg.records)
        if not isinstance(records, list):
            yield self.unreadable(response, f"{cfg.records!r} is not a list in the response")
            return
        for record in records:
            item = {name: dig(record, spec.path) for name, spec in self.site.fields.items()}
            item["_url"] = response.url
            yield item
        if cfg.pagination == "cursor":
            cursor = dig(data, cfg.cursor_path)
            if cursor:
                url = add_or_replace_parameter(response.url, cfg.cursor_param, str(cursor))
                yield scrapy.Request(url, callback=self.parse)
        elif cfg.pagination == "page" and records:
            url = add_or_replace_parameter(response.url, cfg.page_param, str(page + 1))
            yield scrapy.Request(url, callback=self.parse, cb_kwargs={"page": page + 1})


class ListingDetailSpider(ConfiguredSpider):
    """(c) Listing pages whose rows link to detail pages that hold the fields."""

    name = "listing_detail"

    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        cfg = self.site.listing_detail
        links = response.css(cfg.links).getall()
        if not links:
            yield self.unreadable(response, f"no detail links match {cfg.links!r}")
        for href in links:
            yield response.follow(href, callback=self.parse_detail)
        if cfg.next_page and (href := response.css(cfg.next_page).get()):
            yield response.follow(href, callback=self.parse)

    def parse_detail(self, response: scrapy.http.Response) -> Iterator[Any]:
        item = self.item_from(response, response.url)
        yield item if item is not None else self.unreadable(response, "no field matched")
