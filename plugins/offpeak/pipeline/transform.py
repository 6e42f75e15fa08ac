"""Stream a raw JSON Lines feed into a COPY-ready CSV plus a rejects file with one reason each."""

from __future__ import annotations

import csv
import json
from datetime import date
from typing import TYPE_CHECKING, Any

from offpeak.pipeline.normalize import CONVERTERS, FieldError

if TYPE_CHECKING:
    from offpeak.config import Site

# Columns the clean CSV carries besides the site's fields, in this order after them.
EXTRA_COLUMNS = ("source_url", "_line")


class RejectRatioExceeded(Exception):
    """More records were rejected than the site's quality.max_reject_ratio allows."""


def clean_columns(site: Site) -> list[str]:
    return [*site.fields, *EXTRA_COLUMNS]


def _csv_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, date):  # datetime too: isoformat keeps the offset
        return value.isoformat()
    return str(value)


def normalize_record(
    site: Site, record: dict[str, Any]
) -> tuple[list[Any], None] | tuple[None, str]:
    """Typed row for the clean file, or the reason the record is rejected."""
    if record.get("_error"):  # the spider could not read the page this record stands for
        return None, f"unreadable page: {record['_error']}"
    required = site.required_fields()
    row: list[Any] = []
    problems: list[str] = []
    for name, spec in site.fields.items():
        try:
            value = CONVERTERS[spec.type](record.get(name))
        except FieldError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if value is None and name in required:
            problems.append(f"{name}: required field is empty")
        row.append(value)
    if problems:
        return None, "; ".join(problems)
    return row, None


def rejected_key(site: Site, record: dict[str, Any]) -> list[Any] | None:
    """The natural key of a rejected record when every key field still reads cleanly: the
    load keeps that key's earlier good row instead of deleting it. None when it cannot."""
    key = []
    for name in site.natural_key:
        try:
            value = CONVERTERS[site.fields[name].type](record.get(name))
        except FieldError:
            return None
        if value is None:
            return None
        key.append(_csv_value(value))
    return key


def kept_keys_path(rejects):
    """Beside the rejects file: the natural keys of rejected records (CSV), for the load."""
    from offpeak.pipeline.storage import STAGES, sibling

    return sibling(rejects, STAGES["rejects"], ".keys.csv")


def transform_file(site: Site, raw, clean, rejects) -> dict[str, Any]:
    """Read ``raw`` line by line (memory stays flat), write ``clean`` and ``rejects``, and
    beside the rejects the natural keys of rejected records that still have one.

    ``raw`` is an ObjectStoragePath; ``clean``/``rejects`` are published atomically.
    Returns counts; raises RejectRatioExceeded after writing both files when too many fail.
    """
    from offpeak.pipeline.storage import atomic_writer

    counts = {"records": 0, "clean": 0, "rejected": 0, "rejected_keys": 0}
    reasons: dict[str, int] = {}
    keys_path = kept_keys_path(rejects)
    with (
        raw.open("r", encoding="utf-8") as src,
        atomic_writer(clean) as out,
        atomic_writer(rejects) as bad,
        atomic_writer(keys_path) as keys_out,
    ):
        writer = csv.writer(out, lineterminator="\n")
        keys = csv.writer(keys_out, lineterminator="\n")
        for line_no, line in enumerate(src, start=1):
            if not line.strip():
                continue
            counts["records"] += 1
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                reason, raw_text = f"malformed JSON line: {exc}", line.strip()[:2000]
                _reject(bad, line_no, reason, {"_raw": raw_text}, reasons)
                counts["rejected"] += 1
                continue
            row, reason = normalize_record(site, record)
            if reason is not None:
                _reject(bad, line_no, reason, record, reasons)
                counts["rejected"] += 1
                if not record.get("_error") and (key := rejected_key(site, record)):
                    keys.writerow(key)
                    counts["rejected_keys"] += 1
                continue
            writer.writerow([*(_csv_value(v) for v in row), record.get("_url"), line_no])
            counts["clean"] += 1
    ratio = counts["rejected"] / counts["records"] if counts["records"] else 0.0
    result = {
        **counts,
        "reject_ratio": round(ratio, 4),
        "clean_uri": str(clean),
        "rejects_uri": str(rejects),
        "rejected_keys_uri": str(keys_path),
        # The five most frequent reasons, so the XCom stays small whatever the file size.
        "top_reject_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5]),
    }
    if ratio > site.quality.max_reject_ratio:
        raise RejectRatioExceeded(
            f"site {site.name!r}: {counts['rejected']} of {counts['records']} records rejected "
            f"({ratio:.1%}) exceeds quality.max_reject_ratio {site.quality.max_reject_ratio:.1%}; "
            f"reasons are in {rejects}"
        )
    return result


def _reject(
    out, line_no: int, reason: str, record: dict[str, Any], reasons: dict[str, int]
) -> None:
    out.write(json.dumps({"line": line_no, "reason": reason, "record": record}, ensure_ascii=False))
    out.write("\n")
    # Group by field and problem kind, not by value, so the summary stays short.
    key = "; ".join(":".join(p.split(":")[:2]) for p in reason.split("; "))[:120]
    reasons[key] = reasons.get(key, 0) + 1
