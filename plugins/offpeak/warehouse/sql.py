"""What the warehouse's SQL is written with: include/sql sections, identifiers, schema, types."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from offpeak import settings

if TYPE_CHECKING:
    from psycopg import sql

SQL_DIR = Path(__file__).resolve().parents[3] / "include" / "sql"

# PostgreSQL column type of each field type.
SQL_TYPES = {
    "text": "text",
    "int": "bigint",
    "decimal": "numeric",
    "date": "date",
    "datetime": "timestamp with time zone",
    "boolean": "boolean",
    # jsonb: the value exactly (numbers as numeric, every digit), not its spacing or key order.
    "json": "jsonb",
}


@cache
def sql_sections(filename: str) -> dict[str, list[str]]:
    """``include/sql/<filename>`` split into its ``-- name:`` sections, each a list of
    statements (comment lines dropped)."""
    text = (SQL_DIR / filename).read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    for chunk in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        body = "\n".join(line for line in body.splitlines() if not line.startswith("--"))
        sections[name.strip()] = [s.strip() for s in body.split(";") if s.strip()]
    return sections


def schema_name() -> str:
    """The warehouse schema of the site tables and the audit (settings.warehouse_schema)."""
    return settings.warehouse_schema()


def ident(*names: str) -> sql.Identifier:
    """A quoted (possibly dotted) identifier: ``ident(schema, table)`` is ``"schema"."table"``."""
    from psycopg import sql

    return sql.Identifier(*names)
