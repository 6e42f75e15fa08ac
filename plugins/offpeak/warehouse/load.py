"""Load a clean file into its site's partition in one transaction: stage, upsert, prune, audit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from offpeak.pipeline import quality
from offpeak.pipeline.transform import clean_columns
from offpeak.warehouse.checks import check_partition
from offpeak.warehouse.schema import ensure_site_table
from offpeak.warehouse.sql import SQL_TYPES, ident, schema_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    import psycopg
    from psycopg import sql

    from offpeak.config import Site

log = logging.getLogger(__name__)
COPY_BLOCK = 1 << 20


class LoadCountMismatch(Exception):
    """COPY staged a different number of rows than transform wrote."""


class DeletionGuardTripped(quality.QualityCheckFailed):
    """A complete load would delete more of the partition than quality.max_delete_ratio."""


@dataclass(frozen=True)
class _Partition:
    """The (site, region, trading_date) rows one load replaces, in ``schema.<site>``."""

    site: Site
    region: str
    trading_date: date
    run_id: str
    schema: str

    @property
    def table(self) -> sql.Identifier:
        return ident(self.schema, self.site.name)

    @property
    def params(self) -> dict[str, Any]:
        return {"region": self.region, "trading_date": self.trading_date, "run_id": self.run_id}


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

    The site's post-load quality checks (offpeak.warehouse.checks.check_partition) run on the
    new partition before the audit row: a failed check raises QualityCheckFailed and rolls the
    whole load back. The result's ``checks`` says how each check ended.
    """
    part = _Partition(site, region, trading_date, run_id, schema_name())
    with conn.transaction(), conn.cursor() as cur:
        ensure_site_table(cur, site)  # its own transaction: concurrent loads never wait on it
    with conn.transaction(), conn.cursor() as cur:
        staged = _stage(cur, site, clean, expected_rows)
        keep = _stage_kept_keys(cur, site, kept_keys)
        existing = _count(cur, part)
        inserted, updated = _upsert(cur, part)
        deleted = 0
        if complete:
            deleted, complete = _prune(cur, part, keep, existing)
        partition_rows = _count(cur, part)
        checks = _check(cur, part, complete=complete)
        counts = {
            "rows_staged": staged,
            "rows_inserted": inserted,
            "rows_updated": updated,
            "rows_unchanged": partition_rows - inserted - updated,
            "rows_deleted": deleted,
        }
        _audit(
            cur, part, counts, complete=complete, dag_id=dag_id, clean=clean,
            rows_rejected=rows_rejected, raw_uri=raw_uri, raw_sha256=raw_sha256,
        )  # fmt: skip
    return {
        "table": f"{part.schema}.{site.name}",
        **counts,
        "partition_rows": partition_rows,
        "complete": complete,
        "checks": quality.summary(checks),
    }


# ----------------------------------------------------------------------------- steps


def _stage(cur: psycopg.Cursor, site: Site, clean, expected_rows: int) -> int:
    """COPY the clean file into the temporary table offpeak_stage; returns the rows staged,
    or raises LoadCountMismatch if they are not the rows transform wrote."""
    from psycopg import sql

    stage_cols = [
        sql.SQL("{} {}").format(ident(n), sql.SQL(SQL_TYPES[s.type]))
        for n, s in site.fields.items()
    ]
    stage_cols += [sql.SQL("source_url text"), sql.SQL("_line bigint")]
    cur.execute(
        sql.SQL("CREATE TEMP TABLE offpeak_stage ({}) ON COMMIT DROP").format(
            sql.SQL(", ").join(stage_cols)
        )
    )
    columns = _columns(clean_columns(site))
    _copy(cur, clean, sql.SQL("COPY offpeak_stage ({}) FROM STDIN (FORMAT csv)").format(columns))
    staged = cur.rowcount
    if staged != expected_rows:
        raise LoadCountMismatch(
            f"{clean}: COPY staged {staged} rows but transform wrote {expected_rows}; "
            "nothing was loaded"
        )
    return staged


def _stage_kept_keys(cur: psycopg.Cursor, site: Site, kept_keys) -> sql.Composable:
    """COPY the kept keys (transform's rejected records) into the temporary table offpeak_keep;
    returns the condition that spares them from the prune (empty without kept keys)."""
    from psycopg import sql

    if kept_keys is None or not kept_keys.exists():
        return sql.SQL("")
    keys = site.natural_key
    key_types = [
        sql.SQL("{} {}").format(ident(k), sql.SQL(SQL_TYPES[site.fields[k].type])) for k in keys
    ]
    cur.execute(
        sql.SQL("CREATE TEMP TABLE offpeak_keep ({}) ON COMMIT DROP").format(
            sql.SQL(", ").join(key_types)
        )
    )
    copy = sql.SQL("COPY offpeak_keep ({}) FROM STDIN (FORMAT csv)").format(_columns(keys))
    _copy(cur, kept_keys, copy)
    return sql.SQL(
        " AND NOT EXISTS (SELECT 1 FROM offpeak_keep k WHERE ({kkeys}) = ({tkeys}))"
    ).format(kkeys=_columns(keys, "k."), tkeys=_columns(keys, "t."))


def _count(cur: psycopg.Cursor, part: _Partition) -> int:
    """The rows the partition has now."""
    from psycopg import sql

    cur.execute(
        sql.SQL(
            "SELECT count(*) FROM {} WHERE region = %(region)s AND trading_date = %(trading_date)s"
        ).format(part.table),
        part.params,
    )
    (rows,) = cur.fetchone()
    return rows


def _upsert(cur: psycopg.Cursor, part: _Partition) -> tuple[int, int]:
    """Insert or update the last staged record per natural key, leaving rows whose values did
    not change untouched (their run_id and loaded_at too); returns (inserted, updated)."""
    from psycopg import sql

    fields, keys = list(part.site.fields), part.site.natural_key
    all_cols = [*fields, "source_url"]
    non_key = [c for c in all_cols if c not in keys]
    data_cols = [c for c in fields if c not in keys] or keys
    changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
        _columns(data_cols, "t."), _columns(data_cols, "EXCLUDED.")
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
        target=part.table,
        cols=_columns(all_cols),
        keys=_columns(keys),
        sets=sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c)) for c in non_key
        ),
        changed=changed,
    )
    cur.execute(upsert, part.params)
    inserted, updated = cur.fetchone()
    return inserted, updated


def _prune(
    cur: psycopg.Cursor, part: _Partition, keep: sql.Composable, existing: int
) -> tuple[int, bool]:
    """Delete the partition's keys that the staged file lacks (sparing ``keep``), behind the
    deletion guard; returns (rows deleted, whether the load is still complete)."""
    from psycopg import sql

    keys = part.site.natural_key
    gone = sql.SQL(
        " FROM {target} t"
        " WHERE t.region = %(region)s AND t.trading_date = %(trading_date)s"
        " AND NOT EXISTS (SELECT 1 FROM offpeak_stage s WHERE ({skeys}) = ({tkeys})){keep}"
    ).format(target=part.table, skeys=_columns(keys, "s."), tkeys=_columns(keys, "t."), keep=keep)
    cur.execute(sql.SQL("SELECT count(*)") + gone, part.params)
    (doomed,) = cur.fetchone()
    if existing and doomed / existing > part.site.quality.max_delete_ratio:
        return 0, _excess_delete(cur, part, doomed, existing, gone)
    cur.execute(sql.SQL("DELETE") + gone, part.params)
    return cur.rowcount, True


def _excess_delete(
    cur: psycopg.Cursor, part: _Partition, doomed: int, existing: int, gone: sql.Composable
) -> bool:
    """A load that would delete more than max_delete_ratio: raise (on_excess_delete: fail),
    or keep every row and return complete=False (warn)."""
    from psycopg import sql

    site = part.site
    cur.execute(
        sql.SQL("SELECT {}").format(
            sql.SQL(" || ', ' || ").join(
                sql.SQL("t.{}::text").format(ident(k)) for k in site.natural_key
            )
        )
        + gone
        + sql.SQL(" ORDER BY 1 LIMIT 5"),
        part.params,
    )
    sample = ", ".join(r[0] for r in cur.fetchall())
    limit = site.quality.max_delete_ratio
    share = doomed / existing
    what = (
        f"the load of site {site.name} region {part.region} {part.trading_date} would delete "
        f"{doomed} of the partition's {existing} rows ({share:.0%}; keys the new file lacks, "
        f"e.g. {sample}), above quality.max_delete_ratio {limit:.0%}"
    )
    if site.quality.on_excess_delete == "fail":
        raise DeletionGuardTripped(
            f"{what}: nothing was changed, the previous rows stay (on_excess_delete: fail). If "
            f"the site really dropped them, raise quality.max_delete_ratio in sites/"
            f"{site.name}.yaml and clear this load task"
        )
    log.warning(
        "%s: no row deleted, new and changed rows loaded, audited complete=false "
        "(on_excess_delete: warn)", what,
    )  # fmt: skip
    return False


def _check(cur: psycopg.Cursor, part: _Partition, *, complete: bool) -> list[quality.Check]:
    """Run and log the site's partition checks; a failed one raises QualityCheckFailed, which
    rolls the whole load back."""
    site, region, day = part.site, part.region, part.trading_date
    checks = check_partition(cur, site, region, day, part.schema, complete=complete)
    quality.log_checks(checks)
    quality.raise_failures(checks, site, region, day)
    return checks


def _audit(
    cur: psycopg.Cursor,
    part: _Partition,
    counts: dict[str, int],
    *,
    complete: bool,
    dag_id: str,
    clean,
    rows_rejected: int,
    raw_uri: str | None,
    raw_sha256: str | None,
) -> None:
    """The load's row in load_audit."""
    from psycopg import sql

    cur.execute(
        sql.SQL(
            "INSERT INTO {} (site, region, trading_date, dag_id, run_id, raw_uri, raw_sha256,"
            " clean_uri, rows_in_file, rows_rejected, rows_inserted, rows_updated,"
            " rows_unchanged, rows_deleted, complete) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(ident(part.schema, "load_audit")),
        (
            part.site.name,
            part.region,
            part.trading_date,
            dag_id,
            part.run_id,
            raw_uri,
            raw_sha256,
            str(clean),
            counts["rows_staged"],
            rows_rejected,
            counts["rows_inserted"],
            counts["rows_updated"],
            counts["rows_unchanged"],
            counts["rows_deleted"],
            complete,
        ),
    )


# ----------------------------------------------------------------------------- SQL pieces


def _columns(names: Iterable[str], prefix: str = "") -> sql.Composable:
    """``a, b`` quoted, each name after ``prefix`` (``t.`` gives ``t."a", t."b"``)."""
    from psycopg import sql

    return sql.SQL(", ").join(sql.SQL(prefix + "{}").format(ident(n)) for n in names)


def _copy(cur: psycopg.Cursor, path, statement: sql.Composable) -> None:
    """Stream the file at ``path`` into ``COPY ... FROM STDIN``, a block at a time."""
    with path.open("rb") as src, cur.copy(statement) as copy:
        while block := src.read(COPY_BLOCK):
            copy.write(block)
