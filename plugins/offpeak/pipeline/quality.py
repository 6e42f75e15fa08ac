"""Data-quality checks: crawl monitors on Scrapy's stats, and SQL checks of a loaded partition."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from offpeak.config import Site

log = logging.getLogger(__name__)
# The FieldCoverage extension counts, per field, the items in which it has a value.
FIELD_STAT = "offpeak/field/{}"
STATUS_STAT = "downloader/response_status_count/"
# A missing robots.txt or a page past the last one is a normal answer, not a site error.
HTTP_IGNORED = frozenset({404})


class QualityCheckFailed(Exception):
    """One or more quality checks failed; the message names each check and its numbers."""


@dataclass(frozen=True)
class Check:
    """The outcome of one check; ``detail`` holds the numbers it was decided on."""

    name: str
    passed: bool
    detail: str
    field: str | None = None  # the site field it is about, for per-field checks
    skipped: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}.{self.field}" if self.field else self.name

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "passed" if self.passed else "failed"


def _pct(share: float) -> str:
    return f"{share * 100:.1f}".removesuffix(".0") + "%"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- crawl


def check_crawl(site: Site, stats: dict[str, Any], items: int) -> list[Check]:
    """Judge a crawl by its Scrapy stats and the number of items in its feed.

    ScrapeOperator has already judged how the crawl ended (its exit code, a finish reason in
    ``quality.finish_reasons``, a stop at the window's end); these are the monitors after it.
    """
    from offpeak.crawl.contract import UNREADABLE_PAGES

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
        present = int(stats.get(FIELD_STAT.format(name), 0))
        share = present / items
        ok = share >= least
        detail = (
            f"field {name!r} present in {present} of {items} items ({_pct(share)}), "
            f"{'min' if ok else 'below min'} {_pct(least)}"
        )
        checks.append(Check("field_coverage", ok, detail, name))
    return checks


def http_errors(stats: dict[str, Any]) -> dict[int, int]:
    """``{status: responses}`` for statuses >= 400 other than 404, from Scrapy's stats. A 429
    or 503 with Retry-After that was waited out is throttling, not an error: not counted."""
    from offpeak.crawl.contract import THROTTLED_PREFIX, by_status

    waited = by_status(stats, THROTTLED_PREFIX)
    errors = {c: n - waited.get(c, 0) for c, n in by_status(stats, STATUS_STAT).items()}
    return {c: n for c, n in errors.items() if c >= 400 and c not in HTTP_IGNORED and n > 0}


def _at_most(name: str, count: int, limit: int, what: str) -> Check:
    ok = count <= limit
    return Check(name, ok, f"{what}, {'max' if ok else 'above max'} {limit}")


# ----------------------------------------------------------------------------- partition


def check_partition(
    cur: Any,
    site: Site,
    region: str,
    trading_date: date,
    schema: str,
    *,
    complete: bool = True,
) -> list[Check]:
    """SQL checks of the (site, region, trading_date) partition of ``schema.<site>``, run by
    the load in its transaction: non-blank natural keys, the row count against the previous
    trading day's, and each configured range.

    "Previous trading day" is the latest earlier trading date loaded for the same region
    (load_audit says which; the table says how many rows it has now): simple and
    calendar-free, so after a holiday or a missed day the load is compared with the last day
    loaded. A date whose latest load was incomplete (``complete=False``: a crawl cut short) is
    no baseline and is passed over; an incomplete load itself is not compared.
    """
    from psycopg import sql

    from offpeak.warehouse.load import sql_sections

    sections = sql_sections("quality.sql")
    table = sql.Identifier(schema, site.name)
    params: dict[str, Any] = {"site": site.name, "region": region, "trading_date": trading_date}

    def run(section: str, extra: dict[str, Any] | None = None, **identifiers: Any) -> tuple:
        (statement,) = sections[section]
        statement = sql.SQL(statement).format(
            schema=sql.Identifier(schema), site_table=table, **identifiers
        )
        cur.execute(statement, {**params, **(extra or {})})
        return cur.fetchone()

    blank = []
    for key in site.natural_key:
        blank.append(sql.SQL("{} IS NULL").format(sql.Identifier(key)))
        if site.fields[key].type == "text":
            blank.append(sql.SQL("btrim({}) = ''").format(sql.Identifier(key)))
    rows, blank_keys = run("partition_keys", blank_key=sql.SQL(" OR ").join(blank))
    keys = ", ".join(site.natural_key)
    detail = f"{blank_keys} of {rows} rows have a null or blank natural key ({keys})"
    checks = [Check("natural_key", blank_keys == 0, detail)]
    checks.append(_row_count(site, rows, complete, lambda: run("previous_partition")))
    for name, bounds in site.quality.ranges.items():
        lo = None if bounds.min is None else Decimal(str(bounds.min))
        hi = None if bounds.max is None else Decimal(str(bounds.max))
        values, outside, low, high = run(
            "range", {"min": lo, "max": hi}, column=sql.Identifier(name)
        )
        limits = ", ".join(
            f"{word} {_num(v)}"
            for word, v in (("min", bounds.min), ("max", bounds.max))
            if v is not None
        )
        seen = f"lowest {low}, highest {high}" if values else "no values"
        detail = f"field {name!r}: {outside} of {values} values outside {limits} ({seen})"
        checks.append(Check("range", outside == 0, detail, name))
    return checks


def _row_count(site: Site, rows: int, complete: bool, previous: Any) -> Check:
    tolerance = site.quality.row_count_tolerance
    if tolerance is None:
        note = "quality.row_count_tolerance is null"
    elif not complete:
        note = "an incomplete crawl (a partial load) is not compared"
    elif (found := previous()) is None:
        note = "no earlier partition of the region to compare with"
    elif found[1] == 0:
        note = f"the previous trading day {found[0]} has no rows to compare with"
    else:
        prev_date, prev_rows = found
        change = abs(rows - prev_rows) / prev_rows
        ok = change <= tolerance
        return Check(
            "row_count",
            ok,
            f"{rows} rows vs {prev_rows} on {prev_date} (previous trading day): change "
            f"{_pct(change)}, {'tolerance' if ok else 'above tolerance'} {_pct(tolerance)}",
        )
    return Check("row_count", True, f"{rows} rows; {note}", skipped=True)


# ----------------------------------------------------------------------------- reporting


def summary(checks: list[Check]) -> dict[str, str]:
    """``{label: passed|failed|skipped}``: small enough for an XCom."""
    return {c.label: c.status for c in checks}


def log_checks(checks: list[Check], logger: Any = None) -> None:
    """One line per check (to ``logger``, else this module's), so the task log shows every
    result and its numbers."""
    for c in checks:
        level = logging.INFO if c.passed else logging.WARNING
        (logger or log).log(level, "Quality check %s %s: %s", c.name, c.status, c.detail)


def raise_failures(checks: list[Check], site: Site | str, region: str, trading_date: date) -> None:
    """Raise QualityCheckFailed listing every failed check, or return if all passed."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return
    where = f"site {getattr(site, 'name', site)} region {region} {trading_date}"
    if len(failed) == 1:
        (c,) = failed
        raise QualityCheckFailed(f"quality check {c.name} failed for {where}: {c.detail}")
    lines = "\n".join(f"  {c.name}: {c.detail}" for c in failed)
    raise QualityCheckFailed(
        f"{len(failed)} quality checks failed for {where} "
        f"({', '.join(c.name for c in failed)}):\n{lines}"
    )
