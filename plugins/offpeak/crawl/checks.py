"""Crawl monitors: the quality checks on a crawl's Scrapy stats and the items of its feed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from offpeak.crawl.contract import FIELD_PREFIX, UNREADABLE_PAGES, http_errors
from offpeak.pipeline.quality import Check, pct

if TYPE_CHECKING:
    from offpeak.config import Site

# http_errors lives in offpeak.crawl.contract: the crawl's progress lines count the same way.
__all__ = ["check_crawl", "http_errors"]

# Ours, not Spidermon's built-in monitors: those count and judge three of these four otherwise
# (an unreadable page, a blank or missing value, waited-out throttling, a total over status
# codes), and with its field coverage the crawl costs 1.14x plain Scrapy at 5 pages and 1.18x
# at 500, past the 1.10x budget. docs/decisions.md, "Crawl monitors: ours, not Spidermon's".


def check_crawl(site: Site, stats: dict[str, Any], items: int) -> list[Check]:
    """Judge a crawl by its Scrapy stats and the number of items in its feed.

    ScrapeOperator has already judged how the crawl ended (its exit code, a finish reason in
    ``quality.finish_reasons``, a stop at the window's end); these are the monitors after it.
    """
    q = site.quality
    # A record standing for an unreadable page is in the feed, but it is not data.
    items -= int(stats.get(UNREADABLE_PAGES, 0))
    ok = items >= q.min_items
    detail = f"scraped {items} items, {'min' if ok else 'fewer than min'} {q.min_items}"
    checks = [Check("min_items", ok, detail)]
    errors = int(stats.get("log_count/ERROR", 0))
    what = f"{errors} errors in the crawl log (log_count/ERROR)"
    checks.append(_at_most("error_count", errors, q.max_error_count, what))
    bad = http_errors(stats)
    total = sum(bad.values())
    codes = f" ({', '.join(f'{c}: {n}' for c, n in bad.items())})" if bad else ""
    what = f"{total} responses with status >= 400 other than 404{codes}"
    checks.append(_at_most("http_errors", total, q.max_http_errors, what))
    for name, least in q.min_field_coverage.items():
        if items == 0:
            checks.append(
                Check("field_coverage", True, f"field {name!r}: no items", name, skipped=True)
            )
            continue
        present = int(stats.get(FIELD_PREFIX + name, 0))
        share = present / items
        ok = share >= least
        detail = (
            f"field {name!r} present in {present} of {items} items ({pct(share)}), "
            f"{'min' if ok else 'below min'} {pct(least)}"
        )
        checks.append(Check("field_coverage", ok, detail, name))
    return checks


def _at_most(name: str, count: int, limit: int, what: str) -> Check:
    ok = count <= limit
    return Check(name, ok, f"{what}, {'max' if ok else 'above max'} {limit}")
