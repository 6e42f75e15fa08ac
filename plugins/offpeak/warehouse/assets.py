"""The warehouse tables as Airflow Assets: each load emits an event on its site's table
(with the partition's row counts), and the rollups read them as inlets.

URIs name the logical warehouse (the ``warehouse`` connection), not a host: the same asset
in every environment. Schema: ``OFFPEAK_WAREHOUSE_SCHEMA`` (``scraped``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from offpeak import compat
from offpeak.warehouse.sql import schema_name

if TYPE_CHECKING:
    from airflow.sdk import Asset

REGION_ROLLUP_TABLES = ("rollup_site_day", "rollup_measure_day")
GLOBAL_ROLLUP_TABLE = "rollup_global_day"


def table_asset(table: str) -> Asset:
    """The Asset of warehouse table ``table``. Its URI is written in the postgres provider's
    normal form, so it is built without the discovery of every provider's URI handlers
    (offpeak.compat.prebuilt_asset: ~100 ms of every task start)."""
    schema = schema_name()
    return compat.prebuilt_asset(
        name=f"warehouse.{schema}.{table}",
        uri=f"postgres://warehouse:5432/warehouse/{schema}/{table}",
        group="warehouse",
    )
