"""SQL quality checks of a loaded partition, run by the load inside its transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from offpeak.pipeline.quality import Check, pct
from offpeak.warehouse.sql import ident, sql_sections

if TYPE_CHECKING:
    from offpeak.config import Site
    from offpeak.partition import Partition


def partition_rows(site: Site, schema: str) -> Any:
    """The rows of the (site, region, trading_date) partition, for partition_summary."""
    from psycopg import sql

    return sql.SQL("{} WHERE region = %(region)s AND trading_date = %(trading_date)s").format(
        ident(schema, site.name)
    )


def summarize(cur: Any, site: Site, region: str, trading_date: date, schema: str, rows=None):
    """One scan of ``rows`` (default: the partition) for every check's numbers: (row count,
    rows with a blank natural key, per configured range (values, outside, lowest, highest))."""
    from psycopg import sql

    (statement,) = sql_sections("quality.sql")["partition_summary"]
    blank = []
    for key in site.natural_key:
        blank.append(sql.SQL("{} IS NULL").format(ident(key)))
        if site.fields[key].type == "text":
            blank.append(sql.SQL("btrim({}) = ''").format(ident(key)))
    params: dict[str, Any] = {"region": region, "trading_date": trading_date}
    ranges = []
    for i, (name, bounds) in enumerate(site.quality.ranges.items()):
        col = ident(name)
        params[f"min{i}"] = None if bounds.min is None else Decimal(str(bounds.min))
        params[f"max{i}"] = None if bounds.max is None else Decimal(str(bounds.max))
        ranges.append(
            sql.SQL(
                ", count({c}), count(*) FILTER (WHERE {c} < %({lo})s OR {c} > %({hi})s),"
                " min({c}), max({c})"
            ).format(c=col, lo=sql.SQL(f"min{i}"), hi=sql.SQL(f"max{i}"))
        )
    cur.execute(
        sql.SQL(statement).format(
            blank_key=sql.SQL(" OR ").join(blank),
            ranges=sql.SQL("").join(ranges),
            rows=rows if rows is not None else partition_rows(site, schema),
        ),
        params,
    )
    found = cur.fetchone()
    count, blank_keys = found[0], found[1]
    per_range = [tuple(found[2 + 4 * i : 6 + 4 * i]) for i in range(len(ranges))]
    return count, blank_keys, per_range


def check_partition(
    cur: Any,
    site: Site,
    partition: Partition,
    schema: str,
    *,
    complete: bool = True,
    summary: tuple | None = None,
) -> list[Check]:
    """SQL checks of the (site, region, trading_date) ``partition`` of ``schema.<site>``, run by
    the load in its transaction: non-blank natural keys, the row count against the previous
    trading day's, and each configured range. ``summary`` is summarize()'s result when the
    load already has it (else it is taken here).

    "Previous trading day" is the latest earlier trading date loaded for the same region
    (load_audit says which; the table says how many rows it has now): simple and
    calendar-free, so after a holiday or a missed day the load is compared with the last day
    loaded. A date whose latest load was incomplete (``complete=False``: a crawl cut short) is
    no baseline and is passed over; an incomplete load itself is not compared.
    """
    from psycopg import sql

    region, trading_date = partition.region, partition.trading_date
    rows, blank_keys, per_range = summary or summarize(cur, site, region, trading_date, schema)
    keys = ", ".join(site.natural_key)
    detail = f"{blank_keys} of {rows} rows have a null or blank natural key ({keys})"
    checks = [Check("natural_key", blank_keys == 0, detail)]

    def previous() -> tuple:
        (statement,) = sql_sections("quality.sql")["previous_partition"]
        statement = sql.SQL(statement).format(
            schema=ident(schema), site_table=ident(schema, site.name)
        )
        cur.execute(statement, {"site": site.name, "region": region, "trading_date": trading_date})
        return cur.fetchone()

    checks.append(_row_count(site, rows, complete, previous))
    for (name, bounds), (values, outside, low, high) in zip(
        site.quality.ranges.items(), per_range, strict=True
    ):
        limits = ", ".join(
            f"{word} {_num(v)}"
            for word, v in (("min", bounds.min), ("max", bounds.max))
            if v is not None
        )
        seen = f"lowest {low}, highest {high}" if values else "no values"
        detail = f"field {name!r}: {outside} of {values} values outside {limits} ({seen})"
        checks.append(Check("range", outside == 0, detail, name))
    return checks


def _row_count(site: Site, rows: int, complete: bool, previous: Callable[[], Any]) -> Check:
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
            f"{pct(change)}, {'tolerance' if ok else 'above tolerance'} {pct(tolerance)}",
        )
    return Check("row_count", True, f"{rows} rows; {note}", skipped=True)


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
