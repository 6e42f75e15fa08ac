"""Warehouse DDL: the shared objects, and each site's table created or migrated from config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from offpeak.errors import Final
from offpeak.warehouse.sql import SQL_DIR, SQL_TYPES, ident, schema_name

if TYPE_CHECKING:
    import psycopg

    from offpeak.config import Site


class SchemaMismatch(Final):
    """The warehouse table cannot hold the site's config without a manual migration."""


def ensure_base_schema(cur: psycopg.Cursor) -> None:
    """The shared warehouse objects (schema, audit, rollup tables), under a schema-wide
    transaction lock: the first runs of a new warehouse, in parallel, must not race. Callers
    commit soon after, so the lock is held for milliseconds."""
    from psycopg import sql

    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema_name(),))
    ddl = (SQL_DIR / "warehouse.sql").read_text(encoding="utf-8")
    cur.execute(sql.SQL(ddl).format(schema=ident(schema_name())))


def ensure_schema(conn: psycopg.Connection) -> None:
    """ensure_base_schema in a short transaction of its own."""
    with conn.transaction(), conn.cursor() as cur:
        ensure_base_schema(cur)


def ensure_site_table(cur: psycopg.Cursor, site: Site) -> list[str]:
    """Create or migrate the site's table; returns the DDL statements it ran.

    Adding a field adds a nullable column. Changing a field's type or the natural key is an
    error that says which column differs, because rewriting history needs a human decision.
    """
    from psycopg import sql

    schema, table = schema_name(), site.name
    # Serialise DDL: two regions loading a new site at once race on its table. The caller
    # commits the DDL at once, so the lock is held for milliseconds, not for a whole load.
    ensure_base_schema(cur)
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.{table}",))
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    )
    existing = dict(cur.fetchall())
    ran: list[str] = []
    if not existing:
        cols = [
            sql.SQL("{} {}{}").format(
                ident(name),
                sql.SQL(SQL_TYPES[spec.type]),
                sql.SQL(" NOT NULL" if name in site.natural_key else ""),
            )
            for name, spec in site.fields.items()
        ]
        cols += [
            sql.SQL("region text NOT NULL"),
            sql.SQL("trading_date date NOT NULL"),
            sql.SQL("source_url text"),
            sql.SQL("run_id text NOT NULL"),
            sql.SQL("loaded_at timestamptz NOT NULL"),
        ]
        pk = [ident(k) for k in site.natural_key] + [ident("region"), ident("trading_date")]
        stmt = sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
            ident(schema, table), sql.SQL(", ").join(cols), sql.SQL(", ").join(pk)
        )
        cur.execute(stmt)
        ran.append(stmt.as_string(cur))
        return ran
    for name, spec in site.fields.items():
        wanted = SQL_TYPES[spec.type]
        have = existing.get(name)
        if have is None:
            stmt = sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                ident(schema, table), ident(name), sql.SQL(wanted)
            )
            cur.execute(stmt)
            ran.append(stmt.as_string(cur))
        elif have != wanted:
            raise SchemaMismatch(
                f"site {site.name!r}: field {name!r} is type {spec.type!r} ({wanted}) in the config"
                " "
                f"but column {schema}.{table}.{name} is {have}; migrate the column by hand "
                f"(ALTER TABLE ... ALTER COLUMN {name} TYPE {wanted} USING ...) or rename the field"
            )
    cur.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey, a.attnum)",
        (f'"{schema}"."{table}"',),
    )
    pk_now = [r[0] for r in cur.fetchall()]
    pk_wanted = [*site.natural_key, "region", "trading_date"]
    if pk_now != pk_wanted:
        raise SchemaMismatch(
            f"site {site.name!r}: natural_key {site.natural_key} gives primary key {pk_wanted}, "
            f"but {schema}.{table} has primary key {pk_now}; change it by hand"
        )
    return ran
