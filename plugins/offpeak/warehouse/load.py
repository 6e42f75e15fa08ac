"""Warehouse schema from site config, and the one-transaction COPY → staging → upsert load."""

from __future__ import annotations

import os
import re
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offpeak.pipeline.normalize import SQL_TYPES
from offpeak.pipeline.quality import QualityCheckFailed
from offpeak.pipeline.transform import clean_columns

if TYPE_CHECKING:
    import psycopg

    from offpeak.config import Site

SQL_DIR = Path(__file__).resolve().parents[3] / "include" / "sql"


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


COPY_BLOCK = 1 << 20


class SchemaMismatch(Exception):
    """The warehouse table cannot hold the site's config without a manual migration."""


class LoadCountMismatch(Exception):
    """COPY staged a different number of rows than transform wrote."""


class DeletionGuardTripped(QualityCheckFailed):
    """A complete load would delete more of the partition than quality.max_delete_ratio."""


def schema_name() -> str:
    return os.environ.get("OFFPEAK_WAREHOUSE_SCHEMA", "scraped")


def _ident(*names: str):
    from psycopg import sql

    return sql.Identifier(*names)


def ensure_base_schema(cur: psycopg.Cursor) -> None:
    """The shared warehouse objects (schema, audit, rollup tables), under a schema-wide
    transaction lock: the first runs of a new warehouse, in parallel, must not race. Callers
    commit soon after, so the lock is held for milliseconds."""
    from psycopg import sql

    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema_name(),))
    ddl = (SQL_DIR / "warehouse.sql").read_text(encoding="utf-8")
    cur.execute(sql.SQL(ddl).format(schema=_ident(schema_name())))


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
                _ident(name),
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
        pk = [_ident(k) for k in site.natural_key] + [_ident("region"), _ident("trading_date")]
        stmt = sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
            _ident(schema, table), sql.SQL(", ").join(cols), sql.SQL(", ").join(pk)
        )
        cur.execute(stmt)
        ran.append(stmt.as_string(cur))
        return ran
    for name, spec in site.fields.items():
        wanted = SQL_TYPES[spec.type]
        have = existing.get(name)
        if have is None:
            stmt = sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                _ident(schema, table), _ident(name), sql.SQL(wanted)
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


def load_partition(
    conn: psycopg.Connection,
    site: Site,
    clean,
    *,
    region: str,
    trading_date: date,
    dag_id: str,
    run_id: str,
    expected_rows: int,
    rows_rejected: int,
    raw_uri: str | None = None,
    raw_sha256: str | None = None,
    complete: bool = True,
    kept_keys=None,
) -> dict[str, Any]:
    """Replace one (site, region, trading_date) partition with the clean file, atomically.

    COPY into a temporary staging table, keep the last record per natural key, upsert the rows
    that changed, delete keys the source no longer lists, and write an audit row, all in one
    transaction: a killed load leaves the previous partition exactly as it was. Schema changes
    (a new table or column) are committed just before, in a short transaction of their own.

    An incomplete crawl (``complete=False``: a page lost, cut short or refused, a window stop,
    a sample) only upserts: keys it did not reach are kept, and the audit row says
    ``complete = false``. ``kept_keys`` (a CSV of natural keys: transform's rejected records)
    are never deleted either: a record rejected today keeps its key's earlier good row.

    Deletion guard: a complete load that would delete more than the site's
    ``quality.max_delete_ratio`` of the partition's existing keys deletes nothing; with
    ``quality.on_excess_delete: fail`` it raises (the partition stays exactly as it was), with
    ``warn`` it adds and updates, logs the numbers and is audited ``complete = false``.

    The site's post-load quality checks (offpeak.pipeline.quality.check_partition) run on the new
    partition before the audit row: a failed check raises QualityCheckFailed and rolls the
    whole load back. The result's ``checks`` says how each check ended.
    """
    from psycopg import sql

    from offpeak.pipeline import quality

    schema = schema_name()
    target = _ident(schema, site.name)
    fields = list(site.fields)
    columns = clean_columns(site)
    keys = site.natural_key
    key_cols = sql.SQL(", ").join(_ident(k) for k in keys)
    with conn.transaction(), conn.cursor() as cur:
        ensure_site_table(cur, site)  # its own transaction: concurrent loads never wait on it
    with conn.transaction(), conn.cursor() as cur:
        stage_cols = [
            sql.SQL("{} {}").format(_ident(n), sql.SQL(SQL_TYPES[s.type]))
            for n, s in site.fields.items()
        ]
        stage_cols += [sql.SQL("source_url text"), sql.SQL("_line bigint")]
        cur.execute(
            sql.SQL("CREATE TEMP TABLE offpeak_stage ({}) ON COMMIT DROP").format(
                sql.SQL(", ").join(stage_cols)
            )
        )
        copy_stmt = sql.SQL("COPY offpeak_stage ({}) FROM STDIN (FORMAT csv)").format(
            sql.SQL(", ").join(_ident(c) for c in columns)
        )
        with clean.open("rb") as src, cur.copy(copy_stmt) as copy:
            while block := src.read(COPY_BLOCK):
                copy.write(block)
        staged = cur.rowcount
        if staged != expected_rows:
            raise LoadCountMismatch(
                f"{clean}: COPY staged {staged} rows but transform wrote {expected_rows}; "
                "nothing was loaded"
            )
        keep = sql.SQL("")
        if kept_keys is not None and kept_keys.exists():
            key_types = [
                sql.SQL("{} {}").format(_ident(k), sql.SQL(SQL_TYPES[site.fields[k].type]))
                for k in keys
            ]
            cur.execute(
                sql.SQL("CREATE TEMP TABLE offpeak_keep ({}) ON COMMIT DROP").format(
                    sql.SQL(", ").join(key_types)
                )
            )
            with (
                kept_keys.open("rb") as src,
                cur.copy(
                    sql.SQL("COPY offpeak_keep ({}) FROM STDIN (FORMAT csv)").format(key_cols)
                ) as copy,
            ):
                while block := src.read(COPY_BLOCK):
                    copy.write(block)
            keep = sql.SQL(
                " AND NOT EXISTS (SELECT 1 FROM offpeak_keep k WHERE ({kkeys}) = ({tkeys}))"
            ).format(
                kkeys=sql.SQL(", ").join(sql.SQL("k.{}").format(_ident(k)) for k in keys),
                tkeys=sql.SQL(", ").join(sql.SQL("t.{}").format(_ident(k)) for k in keys),
            )
        params = {"region": region, "trading_date": trading_date, "run_id": run_id}
        count_partition = sql.SQL(
            "SELECT count(*) FROM {} WHERE region = %(region)s AND trading_date = %(trading_date)s"
        ).format(target)
        cur.execute(count_partition, params)
        (existing,) = cur.fetchone()
        all_cols = [*fields, "source_url"]
        non_key = [c for c in all_cols if c not in keys]
        data_cols = [c for c in fields if c not in keys]
        changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("t.{}").format(_ident(c)) for c in data_cols or keys),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(_ident(c)) for c in data_cols or keys),
        )
        upsert = sql.SQL(
            "WITH up AS ("
            " INSERT INTO {target} AS t ({cols}, region, trading_date, run_id, loaded_at)"
            " SELECT DISTINCT ON ({keys}) {cols}, %(region)s, %(trading_date)s, %(run_id)s, now()"
            " FROM offpeak_stage ORDER BY {keys}, _line DESC"
            " ON CONFLICT ({keys}, region, trading_date) DO UPDATE SET {sets},"
            " run_id = EXCLUDED.run_id, loaded_at = EXCLUDED.loaded_at"
            " WHERE {changed}"
            " RETURNING (xmax = 0) AS inserted)"
            " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
        ).format(
            target=target,
            cols=sql.SQL(", ").join(_ident(c) for c in all_cols),
            keys=key_cols,
            sets=sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(_ident(c), _ident(c)) for c in non_key
            ),
            changed=changed,
        )
        cur.execute(upsert, params)
        inserted, updated = cur.fetchone()
        deleted = 0
        if complete:
            gone = sql.SQL(
                " FROM {target} t"
                " WHERE t.region = %(region)s AND t.trading_date = %(trading_date)s"
                " AND NOT EXISTS (SELECT 1 FROM offpeak_stage s WHERE ({skeys}) = ({tkeys})){keep}"
            ).format(
                target=target,
                skeys=sql.SQL(", ").join(sql.SQL("s.{}").format(_ident(k)) for k in keys),
                tkeys=sql.SQL(", ").join(sql.SQL("t.{}").format(_ident(k)) for k in keys),
                keep=keep,
            )
            cur.execute(sql.SQL("SELECT count(*)") + gone, params)
            (doomed,) = cur.fetchone()
            limit = site.quality.max_delete_ratio
            if existing and doomed / existing > limit:
                complete = _excess_delete(
                    cur, site, region, trading_date, doomed, existing, gone, params
                )
            else:
                cur.execute(sql.SQL("DELETE") + gone, params)
                deleted = cur.rowcount
        cur.execute(count_partition, params)
        (partition_rows,) = cur.fetchone()
        unchanged = partition_rows - inserted - updated
        checks = quality.check_partition(cur, site, region, trading_date, schema, complete=complete)
        quality.log_checks(checks)
        quality.raise_failures(checks, site, region, trading_date)
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (site, region, trading_date, dag_id, run_id, raw_uri, raw_sha256,"
                " clean_uri, rows_in_file, rows_rejected, rows_inserted, rows_updated,"
                " rows_unchanged, rows_deleted, complete) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(_ident(schema, "load_audit")),
            (
                site.name,
                region,
                trading_date,
                dag_id,
                run_id,
                raw_uri,
                raw_sha256,
                str(clean),
                staged,
                rows_rejected,
                inserted,
                updated,
                unchanged,
                deleted,
                complete,
            ),
        )
    return {
        "table": f"{schema}.{site.name}",
        "rows_staged": staged,
        "rows_inserted": inserted,
        "rows_updated": updated,
        "rows_unchanged": unchanged,
        "rows_deleted": deleted,
        "partition_rows": partition_rows,
        "complete": complete,
        "checks": quality.summary(checks),
    }


def _excess_delete(cur, site, region, trading_date, doomed, existing, gone, params) -> bool:
    """A load that would delete more than max_delete_ratio: raise (on_excess_delete: fail),
    or keep every row and return complete=False (warn)."""
    import logging

    from psycopg import sql

    cur.execute(
        sql.SQL("SELECT {}").format(
            sql.SQL(" || ', ' || ").join(
                sql.SQL("t.{}::text").format(_ident(k)) for k in site.natural_key
            )
        )
        + gone
        + sql.SQL(" ORDER BY 1 LIMIT 5"),
        params,
    )
    sample = ", ".join(r[0] for r in cur.fetchall())
    limit = site.quality.max_delete_ratio
    share = doomed / existing
    what = (
        f"the load of site {site.name} region {region} {trading_date} would delete {doomed} of "
        f"the partition's {existing} rows ({share:.0%}; keys the new file lacks, e.g. {sample}), "
        f"above quality.max_delete_ratio {limit:.0%}"
    )
    if site.quality.on_excess_delete == "fail":
        raise DeletionGuardTripped(
            f"{what}: nothing was changed, the previous rows stay (on_excess_delete: fail). If "
            f"the site really dropped them, raise quality.max_delete_ratio in sites/"
            f"{site.name}.yaml and clear this load task"
        )
    logging.getLogger(__name__).warning(
        "%s: no row deleted, new and changed rows loaded, audited complete=false "
        "(on_excess_delete: warn)", what,
    )  # fmt: skip
    return False
