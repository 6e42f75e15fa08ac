"""The generic spider kinds; a site picks one with `kind:` and configures it in YAML."""

# One module per kind; the classes are named here too, where the spider-kind registry
# (offpeak.config) and Scrapy's SPIDER_MODULES find them.

from __future__ import annotations

from offpeak.scraping.spiders.data_file import DataFileSpider
from offpeak.scraping.spiders.html_table import HtmlTableSpider
from offpeak.scraping.spiders.json_api import JsonApiSpider
from offpeak.scraping.spiders.listing_detail import ListingDetailSpider

__all__ = ["DataFileSpider", "HtmlTableSpider", "JsonApiSpider", "ListingDetailSpider"]
