"""Stream a raw JSON Lines feed into a COPY-ready CSV plus a rejects file with one reason each."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offpeak import jsonvalues
from offpeak.errors import Final
from offpeak.pipeline.duplicates import REASON_KEY as DUPLICATE_REASON
from offpeak.pipeline.duplicates import KeyLedger
from offpeak.pipeline.duplicates import settle as settle_duplicates
from offpeak.pipeline.normalize import FieldError, field_converter
from offpeak.pipeline.storage import STAGES, atomic_writer, open_file, sibling

if TYPE_CHECKING:
    from offpeak.config import Site

# Columns the clean CSV carries besides the site's fields, in this order after them.
EXTRA_COLUMNS = ("source_url", "_line")


class RejectRatioExceeded(Final):
    """More records were rejected than the site's quality.max_reject_ratio allows; ``counts``
    are the transform's (records, clean, rejected), for its metrics."""

    def __init__(self, message: str, counts: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.counts = counts or {}


def clean_columns(site: Site) -> list[str]:
    return [*site.fields, *EXTRA_COLUMNS]


def _csv_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):  # as PostgreSQL writes a boolean, never Python's True
        return "true" if value else "false"
    if isinstance(value, date):  # datetime too: isoformat keeps the offset
        return value.isoformat()
    return str(value)  # a json field's value is its JSON text already (normalize.JsonText)


_QUOTED_CSV = re.compile(r'[,"\r\n]')


class CsvRows:
    """A csv.writer for the clean and kept-keys files that quotes as polars' write_csv does,
    so the two paths write the same bytes: a value holding a comma, a quote, a newline or a
    carriage return is quoted (csv.writer leaves a lone carriage return bare, which COPY
    refuses), None and "" are an empty field."""

    def __init__(self, out) -> None:
        self.out = out

    def writerow(self, row: list[Any]) -> None:
        cells = []
        for value in row:
            text = "" if value is None else str(value)
            if _QUOTED_CSV.search(text):
                text = '"' + text.replace('"', '""') + '"'
            cells.append(text)
        self.out.write(",".join(cells) + "\n")

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


Converters = dict[str, Any]  # field name -> its converter (offpeak.pipeline.normalize)


def site_converters(
    site: Site, zone: str | None = None, trading_date: date | None = None
) -> Converters:
    """Each field's converter, for a run in the region of timezone ``zone`` on
    ``trading_date`` (a datetime field's ``timezone: region`` and a format without a day);
    a text field's whitespace default follows the site's kind."""
    return {
        n: field_converter(spec, zone, trading_date, site.kind) for n, spec in site.fields.items()
    }


def normalize_record(
    site: Site, record: dict[str, Any], converters: Converters | None = None
) -> tuple[list[Any], None] | tuple[None, str]:
    """Typed row for the clean file, or the reason the record is rejected."""
    if record.get("_error"):  # the spider could not read the page this record stands for
        return None, f"unreadable page: {record['_error']}"
    converters = converters or site_converters(site)
    required = site.required_fields()
    row: list[Any] = []
    problems: list[str] = []
    for name in site.fields:
        try:
            value = converters[name](record.get(name))
        except FieldError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if value is None and name in required:
            problems.append(f"{name}: required field is empty")
        row.append(value)
    if problems:
        return None, "; ".join(problems)
    return row, None


def rejected_key(
    site: Site, record: dict[str, Any], converters: Converters | None = None
) -> list[Any] | None:
    """The natural key of a rejected record when every key field still reads cleanly: the
    load keeps that key's earlier good row instead of deleting it. None when it cannot."""
    converters = converters or site_converters(site)
    key = []
    for name in site.natural_key:
        try:
            value = converters[name](record.get(name))
        except FieldError:
            return None
        if value is None:
            return None
        key.append(_csv_value(value))
    return key


def kept_keys_path(rejects):
    """Beside the rejects file: the natural keys of rejected records (CSV), for the load."""
    return sibling(rejects, STAGES["rejects"], ".keys.csv")


def transform_file(
    site: Site,
    raw,
    clean,
    rejects,
    *,
    zone: str | None = None,
    trading_date: date | None = None,
) -> dict[str, Any]:
    """Read ``raw`` a block at a time (memory stays flat), write ``clean`` and ``rejects``, and
    beside the rejects the natural keys of rejected records that still have one.

    Each block of lines is decoded at once by polars' NDJSON reader and typed a column at a
    time (offpeak.pipeline.fastpath); a value the fast path does not read, and a line it does
    not decode, go through the per-record reference (reference_line, normalize_record), which
    gives the row or the reason. The output is what the reference alone writes, row for row
    and reason for reason (tests/unit/test_fastpath.py).

    ``raw`` is an ObjectStoragePath; ``clean``/``rejects`` are published atomically. ``zone``
    (the region's timezone) and ``trading_date`` are the run's, for the datetime fields that
    need them (site_converters).
    Records sharing a natural key are then settled by the site's on_duplicate_key
    (offpeak.pipeline.duplicates): ``duplicate_keys`` counts the keys, ``duplicate_records``
    the records rejected or superseded.
    Returns counts; raises RejectRatioExceeded after writing both files when too many fail.
    """
    batch = _Batch(site, site_converters(site, zone, trading_date))
    keys_path = kept_keys_path(rejects)
    with (
        open_file(raw) as src,
        atomic_writer(clean) as out,
        atomic_writer(rejects) as bad,
        atomic_writer(keys_path) as keys_out,
    ):
        keys = CsvRows(keys_out)
        batch.ledger.folder = Path(out.name).parent  # its hashes spill beside the clean file
        line_no = 0
        try:
            for block in _blocks(src):
                ended = block.endswith(b"\n")
                batch.run(block, line_no, out, bad, keys, ended=ended)
                line_no += block.count(b"\n") + (not ended)
            # Keys on more than one record: the site's on_duplicate_key, once the file is whole.
            settled, repeats = settle_duplicates(site, batch.ledger, out, bad, keys)
        finally:
            batch.ledger.close()
    counts = {**batch.counts, **settled.counts()}
    counts["clean"] -= settled.records
    counts["rejected"] += len(repeats)
    if repeats:
        counts["rejected_keys"] += len(settled.keys)
        batch.reasons[DUPLICATE_REASON] = len(repeats)
    ratio = counts["rejected"] / counts["records"] if counts["records"] else 0.0
    result = {
        **counts,
        "reject_ratio": round(ratio, 4),
        "clean_uri": str(clean),
        "rejects_uri": str(rejects),
        "rejected_keys_uri": str(keys_path),
        # The five most frequent reasons, so the XCom stays small whatever the file size.
        "top_reject_reasons": dict(sorted(batch.reasons.items(), key=lambda kv: -kv[1])[:5]),
    }
    if ratio > site.quality.max_reject_ratio:
        raise RejectRatioExceeded(
            f"site {site.name!r}: {counts['rejected']} of {counts['records']} records rejected "
            f"({ratio:.1%}) exceeds quality.max_reject_ratio {site.quality.max_reject_ratio:.1%}; "
            f"reasons are in {rejects}",
            counts,
        )
    return result


BLOCK_BYTES = 2 << 20


def _blocks(src) -> Iterator[bytes]:
    """``src``'s bytes in blocks of whole lines, with universal newlines as text mode reads
    them (``\\r\\n`` and a lone ``\\r`` end a line too)."""
    rest = b""
    while chunk := src.read(BLOCK_BYTES):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if not cut:
            rest = data
            continue
        block, rest = data[:cut], data[cut:]
        yield _newlines(block)
    if rest:
        yield _newlines(rest)


def _newlines(block: bytes) -> bytes:
    if b"\r" in block:
        return block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return block


def reference_line(
    site: Site, line_no: int, text: str, converters: Converters | None = None
) -> _Outcome | None:
    """One line the per-record way: None for a blank line, else its clean row (CSV texts) or
    its reject. The fast path's output must equal this on every line."""
    if not text.strip():
        return None
    try:
        record = jsonvalues.loads(text)  # numbers exact: a Decimal, never a float
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        reason, raw_text = f"malformed JSON line: {exc}", text.strip()[:2000]
        return _Outcome(line_no, None, reason, {"_raw": raw_text}, None)
    row, reason = normalize_record(site, record, converters)
    if reason is not None:
        key = None if record.get("_error") else rejected_key(site, record, converters)
        return _Outcome(line_no, None, reason, record, key)
    url = record.get("_url")
    url = None if url is None or url == "" else str(url)
    return _Outcome(line_no, [*(_csv_value(v) for v in row), url], None, None, None)


@dataclass
class _Outcome:
    """A line's clean row (its CSV texts, source_url last), or its reject: the reason, the
    record (a dict, or the line's own JSON text) and its natural key when it still has one."""

    line: int
    row: list[str | None] | None
    reason: str | None
    record: dict[str, Any] | str | None
    key: list[Any] | None


# A key's value that is a JSON number written positionally (no exponent), true, false or null,
# with what follows it (a comma or the closing brace): _Batch.run rewrites each such value into
# a string, TAG and the token's own text ("price": 1.50 -> "price": "\u00011.50"), so that
# polars reads it as a String, exactly as written (and a null as present: _repeats). A string
# token is matched whole, so a number inside a string is never taken for a value; where a
# match starts inside a string anyway (after a string's closing quote, at a string that begins
# with a colon), the rewrite leaves a backslash outside any string, which polars refuses: that
# block goes the slow way.
_TOKEN = r'("(?:[^"\\\n]|\\.)*" *: *)(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|true|false|null)( *[,}])'
_TAGGED = r'$1"\u0001$2"$3'
# Lines the fast path leaves to the reference because polars' JSON reader could read them
# otherwise than json.loads (looked for once number tokens are rewritten): a value that is not
# a string or null (an exponent, NaN, an object or array: polars would turn them into text its
# own way), a raw control character, a trailing comma, a lone surrogate, an escaped key (it
# could repeat another key unseen), space before a key's colon (keys are counted by their
# `":`); a repeated key, or one the site does not know, is caught by counting. A string that
# holds TAG itself (written \u0001) goes the slow way too: it would pass for a number.
_UNSURE = (
    r'"\s*:\s*[-0-9tfNI\[{]|"\s+:|[\x00-\x1f]|,\s*\}|\\u[dD][89a-fA-F]'
    r'|\\u[0-9a-fA-F]{4}[^"]*"\s*:'
)


class _Batch:
    """Turns blocks of lines into clean CSV, rejects and kept keys, counting as it goes.

    A block's lines are read by polars' NDJSON reader at once, their number, true and false
    values first rewritten into tagged strings (_TOKEN) so that polars reads them as written; a
    line that reader could read otherwise than json.loads (see _UNSURE), or that stands for an
    unreadable page, goes to the reference, and so does the whole block when the reader refuses
    it (a malformed line).
    """

    def __init__(self, site: Site, converters: Converters | None = None) -> None:
        self.site = site
        self.fields = list(site.fields)
        self.required = site.required_fields()
        self.columns = clean_columns(site)
        self.keys = [*self.fields, "_url", "_error"]
        self.converters = converters or site_converters(site)
        self.counts = {"records": 0, "clean": 0, "rejected": 0, "rejected_keys": 0}
        self.ledger = KeyLedger(site, self.columns)  # each clean row's key, for duplicates
        self.reasons: dict[str, int] = {}

    def run(self, block: bytes, first: int, out, bad, keys, *, ended: bool = True) -> None:
        """The block's lines, numbered ``first + 1`` on: clean rows to ``out`` (CSV), rejects
        to ``bad`` (JSON Lines), kept keys to the ``keys`` CSV writer, each in line order.
        ``ended``: the block ends with a newline."""
        import polars as pl

        from offpeak.pipeline.fastpath import TAG, read_fields

        try:
            text = pl.Series([block], dtype=pl.Binary).cast(pl.String)
        except pl.exceptions.InvalidOperationError:
            text = None  # not UTF-8: the reference raises, as reading text did
        if text is None:
            self._reference(block, first, out, bad, keys, ended=ended)
            return
        lines = text.str.split("\n").explode()
        if ended:
            lines = lines.head(-1)
        blank = lines.str.contains(r"^[\s\x1c-\x1f]*$")
        unsure = ~lines.str.starts_with("{") | ~lines.str.ends_with("}")
        unsure = unsure | lines.str.contains("\\u0001", literal=True)
        aside = blank | unsure | lines.str.contains(_UNSURE)
        # What polars reads: the lines with a number, true or false value, those values tagged
        # strings; a line still unsure then stays aside.
        read, tokens = lines, False
        retry = (aside & ~blank & ~unsure).arg_true()
        if len(retry) == len(lines):  # every line (a JSON API's feed): no gather, no scatter
            read = lines.str.replace_all(_TOKEN, _TAGGED)
            aside = read.str.contains(_UNSURE)
            tokens = not aside.all()
        elif len(retry):
            tagged_lines = lines.gather(retry).str.replace_all(_TOKEN, _TAGGED)
            still = tagged_lines.str.contains(_UNSURE)
            tokens = not still.all()
            read = lines.clone().scatter(retry, tagged_lines)
            aside = aside.clone().scatter(retry, still)
        numbers = pl.int_range(first + 1, first + 1 + len(lines), eager=True, dtype=pl.Int64)
        frame = pl.DataFrame(
            {"line": lines, "read": read, "_line": numbers, "aside": aside, "blank": blank}
        )
        sure = frame.filter(~pl.col("aside"))
        as_read = sure.get_column("read")
        if len(sure) == len(frame) and not tokens:
            payload = block
        else:
            payload = as_read.str.join("\n").item().encode()
        try:
            raw = pl.read_ndjson(io.BytesIO(payload), schema=dict.fromkeys(self.keys, pl.String))
        except pl.exceptions.PolarsError:
            raw = None  # a line it cannot read: the reference says which and why
        if raw is None or raw.height != sure.height:
            self._reference(block, first, out, bad, keys, ended=ended)
            return
        raw = raw.with_columns(sure.get_column("_line"), sure.get_column("line"), as_read)
        tagged: list[str] = []
        if tokens:  # a tagged null in these is null: the reference reads them as such
            raw = raw.with_columns(pl.col("_url", "_error").replace(f"{TAG}null", None))
            tagged = self._tagged(raw)
        odd = pl.col("_error").is_not_null() | self._repeats(raw)
        if tokens:
            odd = odd | _odd_tokens(tagged)
        raw = raw.with_columns(_odd=odd).drop("read")
        odd = raw.filter("_odd").select("_line", "line")
        raw = raw.filter(~pl.col("_odd"))
        unsure = frame.filter(pl.col("aside") & ~pl.col("blank")).select("_line", "line")
        last = None if ended else first + len(lines)  # the file's last line, unterminated
        outcomes = [
            o
            for number, line in unsure.vstack(odd).iter_rows()
            if (o := self._line(number, line + "\n" * (number != last))) is not None
        ]
        typed = read_fields(self.site, raw, tagged=tagged)
        self.counts["records"] += raw.height + len(outcomes)
        clean = typed.filter("_read").select(self.columns)
        settled, rejects, kept = self._settle(typed.filter(~pl.col("_read")))
        extra = [[*o.row, o.line] for o in outcomes if o.row is not None]
        if extra or settled.height:
            more = pl.DataFrame(extra, schema=clean.schema, orient="row")
            clean = pl.concat([clean, settled, more]).sort("_line")
        self.counts["clean"] += clean.height
        self.ledger.add(clean)
        if clean.height:
            out.write(clean.write_csv(include_header=False))
        refused = [o for o in outcomes if o.row is None]
        if refused:
            line = [o.line for o in refused]
            text = [
                jsonvalues.dumps({"line": o.line, "reason": o.reason, "record": o.record})
                for o in refused
            ]
            rejects = pl.concat([rejects, pl.DataFrame({"_line": line, "text": text})]).sort(
                "_line"
            )
            key_rows = [[o.line, *o.key] for o in refused if o.key is not None]
            kept = pl.concat([kept, pl.DataFrame(key_rows, schema=kept.schema, orient="row")])
            kept = kept.sort("_line")
            for o in refused:
                self._count_reason(o.reason)
        self.counts["rejected"] += rejects.height
        self.counts["rejected_keys"] += kept.height
        if rejects.height:
            bad.write("\n".join(rejects.get_column("text")) + "\n")
        if kept.height:
            keys_text = kept.drop("_line").write_csv(include_header=False)
            keys.writerows(csv.reader(io.StringIO(keys_text)))  # csv.writer's quoting

    def _tagged(self, raw) -> list[str]:
        """The fields that hold a tagged value (a number, true or false) in this block."""
        import polars as pl

        from offpeak.pipeline.fastpath import TAG

        found = raw.select(pl.col(self.fields).str.starts_with(TAG).any()).row(0)
        return [name for name, has in zip(self.fields, found, strict=True) if has]

    def _line(self, number: int, text: str) -> _Outcome | None:
        return reference_line(self.site, number, text, self.converters)

    def _settle(self, partial):
        """Rows the fast path did not read whole, a column at a time: each unread value goes
        through the reference's converter once per distinct value (normalize_record's reason
        for it, or its value); a row none of whose values fails is clean, any other is a
        reject with the reasons in field order and, when its key fields read, its kept key.
        Returns (clean rows, rejects: _line and the rejects file's line, kept keys: _line and
        the key)."""
        import polars as pl

        from offpeak.pipeline.fastpath import untagged

        texts, problems = [], []
        for name, convert in self.converters.items():
            raw = pl.col(f"{name}!")
            unread = partial.filter(~pl.col(f"{name}?")).get_column(f"{name}!").unique()
            text_of: dict[Any, str | None] = {}
            problem_of: dict[Any, str | None] = {}
            for value in unread.to_list():
                try:
                    typed = convert(untagged(value))
                except FieldError as exc:
                    text_of[value], problem_of[value] = None, f"{name}: {exc}"
                    continue
                text_of[value], problem_of[value] = _csv_value(typed), None
                if typed is None and name in self.required:
                    problem_of[value] = f"{name}: required field is empty"
            for mapping, out, read in (
                (text_of, texts, pl.col(name)),
                (problem_of, problems, None),
            ):
                found = {k: v for k, v in mapping.items() if k is not None}
                looked_up = pl.when(raw.is_null()).then(pl.lit(mapping.get(None), pl.String))
                looked_up = looked_up.otherwise(
                    raw.replace_strict(
                        list(found), list(found.values()), default=None, return_dtype=pl.String
                    )
                )
                value = pl.when(pl.col(f"{name}?")).then(read).otherwise(looked_up)
                out.append(value.alias(name if read is not None else f"{name}~"))
        frame = partial.with_columns(*texts, *problems).with_columns(
            _reason=pl.concat_str(
                [f"{name}~" for name in self.fields], separator="; ", ignore_nulls=True
            )
        )
        settled = frame.filter(pl.col("_reason") == "").select(self.columns)
        rejected = frame.filter(pl.col("_reason") != "")
        reasons = rejected.get_column("_reason").value_counts()
        for reason, count in reasons.iter_rows():
            key = _reason_key(reason)
            self.reasons[key] = self.reasons.get(key, 0) + count
        as_json = {r: json.dumps(r, ensure_ascii=False) for r in reasons.get_column("_reason")}
        rejects = rejected.select(
            "_line",
            text=pl.concat_str(
                pl.lit('{"line": '),
                pl.col("_line").cast(pl.String),
                pl.lit(', "reason": '),
                pl.col("_reason").replace_strict(as_json, return_dtype=pl.String),
                pl.lit(', "record": '),
                pl.col("line"),
                pl.lit("}"),
            ),
        )
        key = self.site.natural_key
        kept = rejected.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in key))
        return settled, rejects, kept.select("_line", *key)

    def _repeats(self, raw) -> Any:
        """Lines that name a key twice (polars keeps the first value, json.loads the last).

        Keys are counted by their `":` (a space before a colon is unsure): more than the
        record's values and nulls (polars cannot tell a null from absent) is a repeat, or an
        unknown key; a stray `":` in a value only sends its line the slow way. A null can hide
        a repeat from that count, so lines with a null are counted key by key."""
        import polars as pl

        line = pl.col("read").str
        nulls = line.count_matches('": null', literal=True) + line.count_matches(
            '":null', literal=True
        )
        present = pl.sum_horizontal([pl.col(k).is_not_null() for k in self.keys])
        counted = raw.select(
            more=line.count_matches('":', literal=True) > present + nulls, nulls=nulls > 0
        )
        flags, has_null = counted.get_column("more"), counted.get_column("nulls")
        with_null = raw.get_column("read").filter(has_null)
        if with_null.is_empty():
            return flags
        twice = pl.select(
            pl.any_horizontal(
                with_null.str.count_matches(f"{json.dumps(k, ensure_ascii=False)}:", literal=True)
                > 1
                for k in self.keys
            )
        ).to_series()
        return flags.scatter(has_null.arg_true(), twice | flags.filter(has_null))

    def _reference(self, block: bytes, first: int, out, bad, keys, *, ended: bool) -> None:
        """Each line of the block the per-record way."""
        writer = CsvRows(out)
        lines = block.split(b"\n")
        if ended:
            lines.pop()
        for i, line in enumerate(lines, start=first + 1):
            text = line.decode("utf-8")
            if ended or i < first + len(lines):
                text += "\n"
            if (o := self._line(i, text)) is None:
                continue
            self.counts["records"] += 1
            if o.row is None:
                self._reject(o, bad, keys)
                continue
            writer.writerow([*o.row, i])
            self.ledger.add_row([*o.row, i])
            self.counts["clean"] += 1
        self.ledger.flush()

    def _reject(self, o: _Outcome, bad, keys) -> None:
        self.counts["rejected"] += 1
        if isinstance(o.record, str):  # the line's own JSON object, as it came
            reason = json.dumps(o.reason, ensure_ascii=False)
            bad.write(f'{{"line": {o.line}, "reason": {reason}, "record": {o.record}}}\n')
            self._count_reason(o.reason)
        else:
            _reject(bad, o.line, o.reason, o.record, self.reasons)
        if o.key is not None:
            keys.writerow(o.key)
            self.counts["rejected_keys"] += 1

    def _count_reason(self, reason: str) -> None:
        key = _reason_key(reason)
        self.reasons[key] = self.reasons.get(key, 0) + 1


# A tagged token longer than this goes to the reference: json.loads refuses an int of more
# than 4300 digits, and a decimal this long is checked there against numeric's range.
_TOKEN_CHARS = 1000


def _odd_tokens(fields: list[str]) -> Any:
    """Rows the reference reads whole because of a tagged value: in ``_url`` (the reference
    writes str() of the number, or True) or, in one of ``fields``, too long for the fast path
    (_TOKEN_CHARS)."""
    import polars as pl

    from offpeak.pipeline.fastpath import TAG

    odd = pl.col("_url").str.starts_with(TAG).fill_null(False)
    for name in fields:
        value = pl.col(name)
        odd = odd | (value.str.starts_with(TAG) & (value.str.len_bytes() > _TOKEN_CHARS))
    return odd.fill_null(False)


def _reject(
    out, line_no: int, reason: str, record: dict[str, Any], reasons: dict[str, int]
) -> None:
    # jsonvalues.dumps: the record's numbers as exact as they were read (Decimals).
    out.write(jsonvalues.dumps({"line": line_no, "reason": reason, "record": record}))
    out.write("\n")
    key = _reason_key(reason)
    reasons[key] = reasons.get(key, 0) + 1


# The value a reason quotes first ("price: 'n/a' is not a number"): left out of the summary.
_QUOTED = re.compile(r"""^([^:]*: )(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def _reason_key(reason: str) -> str:
    """Group by field and problem kind, not by value, so the summary stays short:
    ``price: '…' is not a number``."""
    parts = (_QUOTED.sub(r"\1'…'", p) for p in reason.split("; "))
    return "; ".join(":".join(p.split(":")[:2]) for p in parts)[:120]
