"""What tests read back from the warehouse: the load audit, one query for every tier."""

from __future__ import annotations

from datetime import date
from typing import Any


def load_audit(
    warehouse: Any,
    site: str | None = None,
    region: str | None = None,
    day: date | None = None,
    columns: str = "*",
    schema: str = "scraped",
) -> list[Any]:
    """``schema.load_audit`` rows, oldest first, filtered by whichever of site, region and
    trading date are given: tuples of ``columns``, or dicts by column name for ``*``."""
    filters = {"site": site, "region": region, "trading_date": day}
    where = " AND ".join(f"{k} = %({k})s" for k, v in filters.items() if v is not None)
    cur = warehouse.execute(
        f"SELECT {columns} FROM {schema}.load_audit {'WHERE ' + where if where else ''} "
        "ORDER BY id",
        {k: v for k, v in filters.items() if v is not None},
    )
    if columns != "*":
        return cur.fetchall()
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
