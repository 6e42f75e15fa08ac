"""(c) The listing_detail spider: listing pages whose links lead to one record per detail page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import scrapy

from offpeak.scraping.secret import stored_url
from offpeak.scraping.spiders.base import ConfiguredSpider, on_readable_pages


class ListingDetailSpider(ConfiguredSpider):
    """(c) Listing pages whose rows link to detail pages that hold the fields."""

    name = "listing_detail"

    @on_readable_pages
    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        cfg = self.site.section
        links = response.css(cfg.links).getall()
        if not links:
            yield self.unreadable(response, f"no detail links match {cfg.links!r}")
        for href in links:
            yield self.follow(response, href, callback=self.parse_detail)
        yield from self.next_page(response, cfg.next_page)

    @on_readable_pages
    def parse_detail(self, response: scrapy.http.Response) -> Iterator[Any]:
        item = self.item_from(response, stored_url(response.url))
        yield item if item is not None else self.unreadable(response, "no field matched")
