"""Extension: the final crawl stats and finish reason, as a JSON file for ScrapeOperator."""

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
