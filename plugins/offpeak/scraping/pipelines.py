"""Item pipelines: per field, how many scraped items have a value (quality.min_field_coverage)."""

from __future__ import annotations

from scrapy.exceptions import NotConfigured

from offpeak.crawl import contract


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
    """Item pipeline: count, per field named in ``OFFPEAK_COVERAGE_FIELDS``, the scraped items
    in which it has a value, into the stats ``offpeak/field/<name>`` (every field, 0 when no
    item had it); quality.min_field_coverage is checked on them.

    The counts are plain integers, written to the stats once, when the spider closes (before
    the spider_closed signal, so StatsFile sees them); a pipeline rather than an item_scraped
    handler, because each signal handler costs an asyncio task per item. It runs last, so it
    counts what reaches the feed."""

    def __init__(self, fields: list[str], stats) -> None:
        self.fields = tuple(dict.fromkeys(fields))
        self.counts = dict.fromkeys(self.fields, 0)
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        fields = crawler.settings.getlist(contract.COVERAGE_FIELDS)
        if not fields:
            raise NotConfigured(f"{contract.COVERAGE_FIELDS} is not set")
        return cls(fields, crawler.stats)

    def process_item(self, item):
        if not item.get("_error"):  # such an item stands for an unreadable page, not a record
            counts = self.counts
            for name in self.fields:
                if has_value(item.get(name)):
                    counts[name] += 1
        return item

    def close_spider(self) -> None:
        for name, count in self.counts.items():
            self.stats.set_value(contract.FIELD_PREFIX + name, count)

    # The signal-handler form of the above, for callers outside a crawl's pipeline (the
    # extension's unit test in tests/unit/test_quality_checks.py): the counts so far, at once.
    def spider_opened(self, spider) -> None:
        self.close_spider()

    def item_scraped(self, item, spider) -> None:
        self.process_item(item)
        self.close_spider()
