"""Records of one crawl that share a natural key: found, then settled by on_duplicate_key."""

# The transform writes its clean file a block at a time and cannot know, while it writes, whether
# a key comes back later. So it notes a 64-bit hash of each clean row's key and its line number
# (16 bytes a row, where a set of key tuples would take ten times that), and settles the repeats
# once the file is written. Memory stays flat however long the crawl: past SPILL_ROWS rows the
# hashes go to disk beside the clean file, split into BUCKETS files by hash, and the repeats are
# then found one bucket at a time (a repeat's two hashes are equal, so they share a bucket). Only
# when two hashes are equal is the file read again, to compare those rows' keys exactly (a hash
# collision is no duplicate) and to write it without the copies set aside. A file without a
# repeated key costs the hashes.
#
# Keys compare as the warehouse compares them: 1.5 and 1.50 are one decimal, two datetimes at
# the same instant one datetime; text exactly.

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from offpeak.config import Site

log = logging.getLogger(__name__)

# The summary key of a duplicate's reject reason (transform's top_reject_reasons).
REASON_KEY = "duplicate natural key"
# Copies named in one reason, and keys named in the log, before "and N more".
SHOWN_COPIES = 5
SHOWN_KEYS = 10
# Hashes held in memory before they go to disk (16 bytes each: 1 MiB), and the files by hash
# they go to: a bucket read back holds 1/BUCKETS of the crawl's rows (5 MiB at 5M rows).
SPILL_ROWS = 1 << 16
BUCKETS = 16


def _canonical_expr(name: str, kind: str) -> pl.Expr:
    """A key column's text as the warehouse would compare it, for hashing: trailing zeros of a
    decimal dropped, a datetime as its UTC instant."""
    import polars as pl

    col = pl.col(name).cast(pl.String)
    if kind == "decimal":
        text = col.str.replace(r"^(-?[0-9]*\.[0-9]*?)0+$", "$1").str.replace(r"\.$", "")
        return pl.when(text.str.contains(r"^-0*$")).then(pl.lit("0")).otherwise(text)
    if kind == "datetime":
        instant = col.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_zone="UTC")
        return pl.coalesce(instant.dt.epoch("us").cast(pl.String), col)
    return col


def _canonical(text: str | None, kind: str) -> Any:
    """The same comparison in Python, exact: the key value each copy stands for."""
    if text is None:
        return None
    try:
        if kind == "decimal":
            return Decimal(text).normalize()
        if kind == "datetime":
            return datetime.fromisoformat(text)
    except (InvalidOperation, ValueError):
        pass
    return text


class KeyLedger:
    """The hash of each clean row's natural key, with the row's line in the raw feed; held in
    memory up to SPILL_ROWS, then on disk in ``folder`` (the system's temp folder if None)."""

    def __init__(self, site: Site, columns: list[str], folder: Path | None = None) -> None:
        self.site = site
        self.columns = columns
        self.folder = folder
        self.kinds = {k: site.fields[k].type for k in site.natural_key}
        self.parts: list[pl.DataFrame] = []
        self.held = 0
        self.rows: list[list[str | None]] = []
        self.spilled: tempfile.TemporaryDirectory | None = None
        self.spills = 0

    def add(self, clean: pl.DataFrame) -> None:
        """Clean rows (the clean file's columns as text, ``_line`` last) of one block."""
        import polars as pl

        if clean.height:
            key = pl.struct([_canonical_expr(k, t) for k, t in self.kinds.items()])
            self.parts.append(clean.select(_h=key.hash(), _line=pl.col("_line").cast(pl.Int64)))
            self.held += clean.height
            if self.held >= SPILL_ROWS:
                self._spill()

    def add_row(self, row: list[str | None]) -> None:
        """One clean row as the per-record way writes it (``_line`` last); added by flush()."""
        self.rows.append(row)

    def flush(self) -> None:
        import polars as pl

        if self.rows:
            schema = dict.fromkeys(self.columns, pl.String)
            rows = [[*r[:-1], str(r[-1])] for r in self.rows]
            self.rows = []
            self.add(pl.DataFrame(rows, schema=schema, orient="row"))

    def _spill(self) -> None:
        """The hashes held, to one file per bucket (``<bucket>.<spill>.arrow``)."""
        import polars as pl

        if not self.parts:
            return
        if self.spilled is None:
            self.spilled = tempfile.TemporaryDirectory(prefix=".offpeak-keys-", dir=self.folder)
        held = pl.concat(self.parts).with_columns(_b=pl.col("_h") % BUCKETS)
        self.parts, self.held = [], 0
        for (bucket,), part in held.partition_by("_b", as_dict=True, include_key=False).items():
            part.write_ipc(Path(self.spilled.name) / f"{bucket}.{self.spills}.arrow")
        self.spills += 1

    def candidates(self) -> set[int]:
        """Lines whose key hash another line shares: every duplicate is among them. The
        ledger is spent (its files removed) once they are known."""
        import polars as pl

        def repeated(hashes: pl.DataFrame) -> list[int]:
            return hashes.filter(pl.col("_h").is_duplicated()).get_column("_line").to_list()

        try:
            self.flush()
            if self.spilled is None:
                found = repeated(pl.concat(self.parts)) if self.parts else []
                return set(found)
            self._spill()
            folder, lines = Path(self.spilled.name), set()
            for bucket in range(BUCKETS):
                files = sorted(folder.glob(f"{bucket}.*.arrow"))
                if files:
                    hashes = pl.concat(pl.read_ipc(f) for f in files)
                    lines.update(repeated(hashes))
            return lines
        finally:
            self.close()

    def close(self) -> None:
        """Drop the hashes, in memory and on disk."""
        self.parts, self.held, self.rows = [], 0, []
        if self.spilled is not None:
            self.spilled.cleanup()
            self.spilled = None


@dataclass
class Copy:
    line: int
    url: str | None
    row: list[str | None]


@dataclass
class Settled:
    """What on_duplicate_key made of the repeats: keys repeated, records set aside (rejected
    or superseded), and the lines of the rows the clean file drops."""

    policy: str
    keys: dict[Any, list[Copy]] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)

    @property
    def records(self) -> int:
        return len(self.dropped)

    def counts(self) -> dict[str, int]:
        return {"duplicate_keys": len(self.keys), "duplicate_records": self.records}


def _records(handle: IO[str]) -> Iterator[tuple[list[str], str]]:
    """Each CSV record of ``handle`` with its exact text (a quoted value may hold newlines)."""
    pending: list[str] = []

    def lines() -> Iterator[str]:
        for line in handle:
            pending.append(line)
            yield line

    for row in csv.reader(lines()):
        text = "".join(pending)
        pending.clear()
        yield row, text


def key_text(site: Site, row: list[str | None]) -> str:
    """``symbol='ABC'``, or ``(symbol, venue)=('ABC', 'X')``: the key as a reason names it."""
    names = site.natural_key
    values = [row[list(site.fields).index(k)] for k in names]
    if len(names) == 1:
        return f"{names[0]}={values[0]!r}"
    return f"({', '.join(names)})=({', '.join(map(repr, values))})"


def _copies_text(copies: list[Copy]) -> str:
    shown = ", ".join(f"line {c.line} ({c.url or 'no URL'})" for c in copies[:SHOWN_COPIES])
    more = len(copies) - SHOWN_COPIES
    return shown + (f" and {more} more" if more > 0 else "")


def find(site: Site, clean_path: Path, candidates: set[int]) -> dict[Any, list[Copy]]:
    """The keys that really repeat among the ``candidates`` lines of the clean file, each
    with its copies in feed order."""
    fields = list(site.fields)
    positions = [(fields.index(k), site.fields[k].type) for k in site.natural_key]
    by_key: dict[Any, list[Copy]] = {}
    with open(clean_path, encoding="utf-8", newline="") as src:
        for row, _ in _records(src):
            line = int(row[-1])
            if line not in candidates:
                continue
            values: list[str | None] = [v if v != "" else None for v in row[:-1]]
            key = tuple(_canonical(values[i], kind) for i, kind in positions)
            by_key.setdefault(key, []).append(Copy(line, values[-1], values[: len(fields)]))
    return {k: sorted(c, key=lambda c: c.line) for k, c in by_key.items() if len(c) > 1}


def settle(
    site: Site,
    ledger: KeyLedger,
    out: IO[str],
    bad: IO[str],
    keys: Any,
) -> tuple[Settled, list[tuple[int, str, dict]]]:
    """Apply the site's on_duplicate_key to the clean file being written through ``out``
    (flushed, rewritten in place when rows go); rejects go to ``bad``, kept keys to ``keys``
    (a csv writer). Returns what was settled and the rejects written (line, reason, record)."""
    policy = site.on_duplicate_key
    settled = Settled(policy)
    candidates = ledger.candidates()
    if not candidates:
        return settled, []
    out.flush()
    path = Path(out.name)
    settled.keys = find(site, path, candidates)
    if not settled.keys:
        return settled, []
    rejects: list[tuple[int, str, dict]] = []
    for copies in settled.keys.values():
        if policy == "reject":
            settled.dropped.update(c.line for c in copies)
            reason = (
                f"{REASON_KEY} {key_text(site, copies[0].row)}: {len(copies)} records of this "
                f"crawl have it, {_copies_text(copies)}; every copy is rejected "
                "(on_duplicate_key: reject) and the key's row already loaded stays as it was"
            )
            for c in copies:
                record = dict(zip(site.fields, c.row, strict=True))
                rejects.append((c.line, reason, {**record, "_url": c.url}))
            keys.writerow(_key_values(site, copies[0]))
        else:
            kept = copies[0] if policy == "first" else copies[-1]
            settled.dropped.update(c.line for c in copies if c is not kept)
    _rewrite(path, out, settled.dropped)
    for line, reason, record in sorted(rejects, key=lambda r: r[0]):
        bad.write(
            json.dumps({"line": line, "reason": reason, "record": record}, ensure_ascii=False)
        )
        bad.write("\n")
    _log(site, settled)
    return settled, rejects


def _key_values(site: Site, copy: Copy) -> list[str | None]:
    fields = list(site.fields)
    return [copy.row[fields.index(k)] for k in site.natural_key]


def _rewrite(path: Path, out: IO[str], dropped: set[int]) -> None:
    """The clean file without the ``dropped`` lines' rows, each other row's text as it was."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="", dir=path.parent) as scratch:
        with open(path, encoding="utf-8", newline="") as src:
            for row, text in _records(src):
                if int(row[-1]) not in dropped:
                    scratch.write(text)
        scratch.seek(0)
        out.seek(0)
        out.truncate()
        shutil.copyfileobj(scratch, out)
        out.flush()


def _log(site: Site, settled: Settled) -> None:
    """Name the repeated keys in the task log: how many, and the first few with their pages."""
    what = {
        "reject": "every copy rejected",
        "first": "the first copy of each loaded, the later ones set aside",
        "last": "the last copy of each loaded, the earlier ones set aside",
    }[settled.policy]
    log.warning(
        "site %s: %d natural key(s) on more than one record of this crawl (%d records set "
        "aside): %s (on_duplicate_key: %s)",
        site.name, len(settled.keys), settled.records, what, settled.policy,
    )  # fmt: skip
    for n, copies in enumerate(settled.keys.values()):
        if n == SHOWN_KEYS:
            log.warning("... and %d more repeated key(s)", len(settled.keys) - SHOWN_KEYS)
            break
        log.warning("  %s: %s", key_text(site, copies[0].row), _copies_text(copies))
