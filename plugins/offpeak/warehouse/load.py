"""Load a clean file into its site's partition in one transaction: stage, upsert, prune, audit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from offpeak.errors import Final
from offpeak.pipeline import quality, storage
from offpeak.pipeline.storage import from_uri
from offpeak.pipeline.transform import clean_columns
from offpeak.warehouse.checks import check_partition, summarize
from offpeak.warehouse.schema import ensure_site_table
from offpeak.warehouse.sql import SQL_TYPES, ident, schema_name

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import psycopg
    from psycopg import sql

    from offpeak.config import Site
    from offpeak.partition import Partition

log = logging.getLogger(__name__)
COPY_BLOCK = 1 << 20


class LoadCountMismatch(Final):
    """COPY staged a different number of rows than transform wrote."""


class DeletionGuardTripped(quality.QualityCheckFailed):
    """A complete load would delete more of the partition than quality.max_delete_ratio."""


@dataclass(frozen=True)
class CleanFile:
    """What the transform hands the load: the clean CSV (``path``), the rows it wrote there,
    the records it rejected, the natural keys of rejected records (a CSV, never deleted) and
    the keys it found on more than one record (``duplicate_keys``, for the audit)."""

    path: Any  # an ObjectStoragePath
    rows: int
    rejected: int = 0
    kept_keys: Any = None  # an ObjectStoragePath, or None
    duplicate_keys: int = 0

    @classmethod
    def from_xcom(cls, cleaned: Mapping[str, Any]) -> CleanFile:
        """The transform task's XCom (offpeak.pipeline.transform.transform_file's counts)."""
        keys = cleaned.get("rejected_keys_uri")
        return cls(
            from_uri(cleaned["clean_uri"]),
            cleaned["clean"],
            cleaned["rejected"],
            from_uri(keys) if keys else None,
            cleaned.get("duplicate_keys", 0),
        )


@dataclass(frozen=True)
class RawFeed:
    """The crawl's feed the clean file came from (for the audit row), and whether the crawl
    was complete: an incomplete one (a page lost, a window stop, a sample) deletes nothing."""

    uri: str | None = None
    sha256: str | None = None
    complete: bool = True

    @classmethod
    def from_xcom(cls, scraped: Mapping[str, Any]) -> RawFeed:
        """The scrape task's XCom (offpeak.crawl.output.pointer)."""
        return cls(scraped["uri"], scraped["sha256"], scraped.get("complete", True))


@dataclass(frozen=True)
class _Target:
    """The partition's rows one load replaces, in ``schema.<site>``, and the DAG loading it."""

    site: Site
    partition: Partition
    schema: str
    dag_id: str

    @property
    def region(self) -> str:
        return self.partition.region

    @property
    def trading_date(self) -> date:
        return self.partition.trading_date

    @property
    def run_id(self) -> str:
        return self.partition.run_id

    @property
    def table(self) -> sql.Identifier:
        return ident(self.schema, self.site.name)

    @property
    def lock_key(self) -> str:
        return f"{self.schema}.{self.site.name}/{self.region}/{self.trading_date}"

    @property
    def params(self) -> dict[str, Any]:
        return {"region": self.region, "trading_date": self.trading_date, "run_id": self.run_id}


def load_partition(
    conn: psycopg.Connection,
    site: Site,
    partition: Partition,
    clean: CleanFile,
    *,
    dag_id: str,
    raw: RawFeed = RawFeed(),
) -> dict[str, Any]:
    """Replace one (site, region, trading_date) partition with the clean file, atomically;
    its rows and audit row name ``partition.run_id``, the audit row ``dag_id`` and ``raw``.

    One pass, in one transaction: COPY into a temporary staging table; into a partition that
    has no row yet, one plain INSERT; else a MERGE that inserts new keys and updates only rows
    whose values changed, then, only when the partition now holds keys the file lacks, their
    DELETE; one aggregate query for every quality check; an audit row. A killed load leaves
    the previous partition exactly as it was. Schema changes (a new table or column) are
    committed just before, in a short transaction of their own.

    Keys repeated in the crawl were settled by the transform (the site's on_duplicate_key);
    ``clean.duplicate_keys`` is its count, written to the audit row. Should the file still repeat a
    key (two texts one value in the warehouse's types), the load keeps its last record and
    names the keys in a warning; they are added to the audited count.

    An incomplete crawl (``raw.complete`` false: a page lost, cut short or refused, a window
    stop, a sample) only upserts: keys it did not reach are kept, and the audit row says
    ``complete = false``. ``clean.kept_keys`` (a CSV of natural keys: transform's rejected records)
    are never deleted either: a record rejected today keeps its key's earlier good row.

    Deletion guard: a complete load that would delete more than the site's
    ``quality.max_delete_ratio`` of the partition's existing keys deletes nothing; with
    ``quality.on_excess_delete: fail`` it raises (the partition stays exactly as it was), with
    ``warn`` it adds and updates, logs the numbers and is audited ``complete = false``.

    The site's post-load quality checks (offpeak.warehouse.checks.check_partition) run on the
    new partition before the audit row: a failed check raises QualityCheckFailed and rolls the
    whole load back. The result's ``checks`` says how each check ended.
    """
    part = _Target(site, partition, schema_name(), dag_id)
    region, trading_date = partition.region, partition.trading_date
    complete, duplicate_keys = raw.complete, clean.duplicate_keys
    with conn.transaction(), conn.cursor() as cur:
        ensure_site_table(cur, site)  # its own transaction: concurrent loads never wait on it
    with conn.transaction(), conn.cursor() as cur:
        # Two loads of one partition (a backfill beside a scheduled run) take turns.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (part.lock_key,))
        staged = _stage(cur, site, clean.path, clean.rows)
        keep = _stage_kept_keys(cur, site, clean.kept_keys)
        if _insert_new(cur, part):  # a brand-new partition: one INSERT, nothing to compare
            existing, inserted, updated, deleted = 0, staged, 0, 0
            summary = summarize(cur, site, region, trading_date, part.schema, _staged())
        else:
            existing = _count(cur, part)
            changed, unique, repeated = _merge(cur, part, staged)
            duplicate_keys += repeated
            summary = summarize(cur, site, region, trading_date, part.schema)
            inserted = summary[0] - existing
            updated, deleted = changed - inserted, 0
            # Keys the file lacks, if any (at most rows now - distinct keys staged): the prune.
            if complete and (unique is None or summary[0] > unique):
                deleted, complete = _prune(cur, part, keep, existing)
                if deleted:
                    summary = summarize(cur, site, region, trading_date, part.schema)
        partition_rows = summary[0]
        checks = _check(cur, part, complete=complete, summary=summary)
        counts = {
            "rows_staged": staged,
            "rows_inserted": inserted,
            "rows_updated": updated,
            "rows_unchanged": partition_rows - inserted - updated,
            "rows_deleted": deleted,
            "duplicate_keys": duplicate_keys,
        }
        _audit(cur, part, counts, clean, raw, complete=complete)
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

    if kept_keys is None or not storage.exists(kept_keys):
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


def _count(cur: psycopg.Cursor, part: _Target) -> int:
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


def _insert_new(cur: psycopg.Cursor, part: _Target) -> bool:
    """Insert the staged rows as they are when the partition has no row yet; False (and
    nothing done) when it has rows, or when the file repeats a key (the merge then keeps the
    last record of each)."""
    from psycopg import errors, sql

    cur.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE region = %(region)s"
            " AND trading_date = %(trading_date)s)"
        ).format(part.table),
        part.params,
    )
    if cur.fetchone()[0]:
        return False
    cols = _columns([*part.site.fields, "source_url"])
    insert = sql.SQL(
        "INSERT INTO {target} ({cols}, region, trading_date, run_id, loaded_at)"
        " SELECT {cols}, %(region)s, %(trading_date)s, %(run_id)s, now() FROM offpeak_stage"
    ).format(target=part.table, cols=cols)
    try:
        with cur.connection.transaction():  # a savepoint: a repeated key undoes only this
            cur.execute(insert, part.params)
    except errors.UniqueViolation:
        return False
    return True


def _merge(cur: psycopg.Cursor, part: _Target, staged: int) -> tuple[int, int | None, int]:
    """MERGE the staged rows into the partition: insert new keys, update rows whose values
    changed, leave the rest untouched (their run_id and loaded_at too). Returns (rows
    inserted or updated, distinct keys staged; None when the file repeated a key and only its
    last record per key was merged, keys the file repeated)."""
    from psycopg import errors, sql

    fields, keys = list(part.site.fields), part.site.natural_key
    all_cols = [*fields, "source_url"]
    non_key = [c for c in all_cols if c not in keys]
    data_cols = [c for c in fields if c not in keys] or keys
    merge = sql.SQL(
        "MERGE INTO {target} AS t USING ({source}) AS s"
        " ON {on} AND t.region = %(region)s AND t.trading_date = %(trading_date)s"
        " WHEN MATCHED AND ({t_data}) IS DISTINCT FROM ({s_data}) THEN UPDATE SET {sets},"
        " run_id = %(run_id)s, loaded_at = now()"
        " WHEN NOT MATCHED THEN INSERT ({cols}, region, trading_date, run_id, loaded_at)"
        " VALUES ({s_cols}, %(region)s, %(trading_date)s, %(run_id)s, now())"
    )
    parts = {
        "target": part.table,
        "on": sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=ident(k)) for k in keys),
        "t_data": _columns(data_cols, "t."),
        "s_data": _columns(data_cols, "s."),
        "sets": sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=ident(c)) for c in non_key),
        "cols": _columns(all_cols),
        "s_cols": _columns(all_cols, "s."),
    }
    plain = sql.SQL("SELECT * FROM offpeak_stage")
    try:
        with cur.connection.transaction():  # a savepoint: a repeated key undoes only this
            cur.execute(merge.format(source=plain, **parts), part.params)
        return cur.rowcount, staged, 0  # no key repeated: as many keys as rows staged
    except (errors.CardinalityViolation, errors.UniqueViolation):
        pass
    repeated = _name_repeated_keys(cur, part)
    last = sql.SQL(
        "SELECT DISTINCT ON ({keys}) * FROM offpeak_stage ORDER BY {keys}, _line DESC"
    ).format(keys=_columns(keys))
    cur.execute(merge.format(source=last, **parts), part.params)
    return cur.rowcount, None, repeated


def _name_repeated_keys(cur: psycopg.Cursor, part: _Target) -> int:
    """Keys the staged file repeats although the transform settled its duplicates (texts
    that are one value in the warehouse's types): counted and named in a warning."""
    from psycopg import sql

    keys = part.site.natural_key
    cur.execute(
        sql.SQL(
            "SELECT {text}, count(*) OVER () FROM offpeak_stage GROUP BY {keys}"
            " HAVING count(*) > 1 ORDER BY 1 LIMIT 5"
        ).format(
            keys=_columns(keys),
            text=sql.SQL(" || ', ' || ").join(sql.SQL("{}::text").format(ident(k)) for k in keys),
        )
    )
    found = cur.fetchall()
    if found:
        log.warning(
            "site %s region %s %s: the clean file repeats %d natural key(s) (%s) in the "
            "warehouse's types; the last record of each is loaded",
            part.site.name, part.region, part.trading_date, found[0][1],
            "; ".join(r[0] for r in found),
        )  # fmt: skip
    return found[0][1] if found else 0


def _prune(
    cur: psycopg.Cursor, part: _Target, keep: sql.Composable, existing: int
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
    cur: psycopg.Cursor, part: _Target, doomed: int, existing: int, gone: sql.Composable
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


def _check(
    cur: psycopg.Cursor, part: _Target, *, complete: bool, summary: tuple
) -> list[quality.Check]:
    """Decide and log the site's partition checks on summarize()'s numbers; a failed one
    raises QualityCheckFailed, which rolls the whole load back."""
    site, region, day = part.site, part.region, part.trading_date
    checks = check_partition(
        cur, site, part.partition, part.schema, complete=complete, summary=summary
    )
    quality.log_checks(checks)
    quality.raise_failures(checks, site, region, day)
    return checks


def _audit(
    cur: psycopg.Cursor,
    part: _Target,
    counts: dict[str, int],
    clean: CleanFile,
    raw: RawFeed,
    *,
    complete: bool,
) -> None:
    """The load's row in load_audit; ``complete`` as the load ended (the deletion guard may
    have made a complete crawl's load incomplete)."""
    from psycopg import sql

    cur.execute(
        sql.SQL(
            "INSERT INTO {} (site, region, trading_date, dag_id, run_id, raw_uri, raw_sha256,"
            " clean_uri, rows_in_file, rows_rejected, rows_inserted, rows_updated,"
            " rows_unchanged, rows_deleted, complete, duplicate_keys) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(ident(part.schema, "load_audit")),
        (
            part.site.name,
            part.region,
            part.trading_date,
            part.dag_id,
            part.run_id,
            raw.uri,
            raw.sha256,
            str(clean.path),
            counts["rows_staged"],
            clean.rejected,
            counts["rows_inserted"],
            counts["rows_updated"],
            counts["rows_unchanged"],
            counts["rows_deleted"],
            complete,
            counts["duplicate_keys"],
        ),
    )


# ----------------------------------------------------------------------------- SQL pieces


def _columns(names: Iterable[str], prefix: str = "") -> sql.Composable:
    """``a, b`` quoted, each name after ``prefix`` (``t.`` gives ``t."a", t."b"``)."""
    from psycopg import sql

    return sql.SQL(", ").join(sql.SQL(prefix + "{}").format(ident(n)) for n in names)


def _copy(cur: psycopg.Cursor, path, statement: sql.Composable) -> None:
    """Stream the file at ``path`` into ``COPY ... FROM STDIN``, a block at a time."""
    with storage.open_file(path) as src, cur.copy(statement) as copy:
        while block := src.read(COPY_BLOCK):
            copy.write(block)


def _staged() -> sql.Composable:
    """The staged rows, as the rows partition_summary scans."""
    from psycopg import sql

    return sql.SQL("offpeak_stage")
