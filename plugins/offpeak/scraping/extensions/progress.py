"""Scrapy extension: a progress line in the task log at a fixed interval, and final stats.

``progress: 12 pages, 340 items, 0 errors, 0 HTTP errors, 45 s`` every
``OFFPEAK_PROGRESS_INTERVAL`` seconds (30 by default; Scrapy's own LogStats is off), so a
long crawl shows it is alive at least once a minute, with the numbers an operator watches.
"""

from __future__ import annotations

import logging
import time

from scrapy import signals
from scrapy.exceptions import NotConfigured
from twisted.internet import task

from offpeak.crawl.contract import http_errors

log = logging.getLogger("offpeak.progress")


class Progress:
    def __init__(self, stats, interval: float) -> None:
        self.stats = stats
        self.interval = interval
        self.started = time.monotonic()
        self.loop: task.LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler):
        interval = crawler.settings.getfloat("OFFPEAK_PROGRESS_INTERVAL")
        if interval <= 0:
            raise NotConfigured("OFFPEAK_PROGRESS_INTERVAL is 0")
        ext = cls(crawler.stats, interval)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def numbers(self) -> str:
        get = self.stats.get_value
        http = sum(http_errors(self.stats.get_stats()).values())  # as quality.max_http_errors
        return (
            f"{get('response_received_count', 0)} pages, {get('item_scraped_count', 0)} items, "
            f"{get('log_count/ERROR', 0)} errors, {http} HTTP errors, "
            f"{time.monotonic() - self.started:.0f} s"
        )

    def spider_opened(self, spider) -> None:
        self.started = time.monotonic()
        self.loop = task.LoopingCall(lambda: log.info("progress: %s", self.numbers()))
        self.loop.start(self.interval, now=False)

    def spider_closed(self, spider, reason: str) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        log.info("finished (%s): %s", reason, self.numbers())
