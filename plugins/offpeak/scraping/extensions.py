"""Scrapy extensions: final crawl stats as a JSON file for ScrapeOperator; field coverage."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from scrapy import signals
from scrapy.exceptions import NotConfigured

from offpeak.crawl import contract


class StatsFile:
    """Write the crawl stats and finish reason to ``OFFPEAK_STATS_FILE`` when the spider closes."""

    def __init__(self, path: str, stats) -> None:
        self.path = Path(path)
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        path = crawler.settings.get(contract.STATS_FILE)
        if not path:
            raise NotConfigured(f"{contract.STATS_FILE} is not set")
        ext = cls(path, crawler.stats)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_closed(self, spider, reason: str) -> None:
        stats = {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in self.stats.get_stats().items()
        }
        stats.setdefault("finish_reason", reason)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats, sort_keys=True, default=str), encoding="utf-8")
        tmp.replace(self.path)


def has_value(value: object) -> bool:
    """Present and non-empty: not None, not blank text, not an empty list or mapping."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | tuple | dict):
        return bool(value)
    return True


class FieldCoverage:
    """Count, per field named in ``OFFPEAK_COVERAGE_FIELDS``, the scraped items in which it has a
    value, into the stats ``offpeak/field/<name>``; quality.min_field_coverage is checked on
    them. One dict lookup per field and item: cheap beside parsing the page."""

    def __init__(self, fields: list[str], stats) -> None:
        self.keys = {name: f"offpeak/field/{name}" for name in fields}
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        fields = crawler.settings.getlist(contract.COVERAGE_FIELDS)
        if not fields:
            raise NotConfigured(f"{contract.COVERAGE_FIELDS} is not set")
        ext = cls(fields, crawler.stats)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.item_scraped, signal=signals.item_scraped)
        return ext

    def spider_opened(self, spider) -> None:
        for key in self.keys.values():  # a field found in no item still shows, as 0
            self.stats.set_value(key, 0)

    def item_scraped(self, item, spider) -> None:
        if item.get("_error"):  # stands for an unreadable page, not a record
            return
        for name, key in self.keys.items():
            if has_value(item.get(name)):
                self.stats.inc_value(key)
