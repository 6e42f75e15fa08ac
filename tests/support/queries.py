"""What tests read back from the warehouse: the load audit, one query for every tier; and
warehouse schemas of a module's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def own_schema(pg, prefix: str) -> Iterator[str]:
    """A warehouse schema name of a test module's own (``<prefix>_<random>``), dropped at the
    end: `airflow dags test` processes load there (OFFPEAK_WAREHOUSE_SCHEMA)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(pg.uri("warehouse"), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
