"""Unit tests for plugins/offpeak/transform.py: raw JSON Lines to a clean CSV and a rejects file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from offpeak.config import Quality, get_site, load_project, load_site
from offpeak.pipeline.transform import (
    RejectRatioExceeded,
    clean_columns,
    normalize_record,
    transform_file,
)

SITE_YAML = """\
kind: html_table
base_url_conn_id: site_quotes
start_urls: ["/quotes/{region}/{trading_date}"]
regions: [americas]
natural_key: [symbol]
html_table: {rows: "table tr"}
fields:
  symbol:    {type: text,     css: "td.symbol::text"}
  price:     {type: decimal,  css: "td.price::text", required: true, measure: true}
  volume:    {type: int,      css: "td.volume::text", measure: true}
  listed_on: {type: date,     css: "td.listed::text"}
  quoted_at: {type: datetime, css: "td.at::text"}
quality:
  max_reject_ratio: 0.6
"""

GOOD = [
    {
        "symbol": " ACME ",
        "price": "$1,234.50",
        "volume": "1,234,567",
        "listed_on": "2001-02-03",
        "quoted_at": "2026-11-20T16:59:58+05:30",
        "_url": "http://demo/quotes?page=1",
    },
    {"symbol": "NEG", "price": "(1.37)", "volume": "", "_url": "http://demo/quotes?page=1"},
    {"symbol": "Nestlé", "price": "CHF 12.50", "volume": None, "_url": "http://demo/q?page=2"},
    {"symbol": "NOURL", "price": "0.5"},
]
BAD_DECIMAL = {"symbol": "BAD", "price": "n/a", "_url": "http://demo/quotes?page=2"}
EMPTY_KEY = {"symbol": "  ", "price": "1.00", "_url": "http://demo/quotes?page=2"}
UNREADABLE = {"_error": "HTTP 500 after 3 retries", "_url": "http://demo/quotes?page=3"}


@pytest.fixture
def site(tmp_path: Path):
    path = tmp_path / "config" / "quotes.yaml"
    path.parent.mkdir()
    path.write_text(SITE_YAML, encoding="utf-8")
    regions = load_project().regions
    return load_site(path, regions)


def storage(path: Path) -> ObjectStoragePath:
    return ObjectStoragePath(path.as_uri())


def write_raw(tmp_path: Path, lines: list[str]) -> Path:
    raw = tmp_path / "raw" / "run.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return raw


def mixed_lines() -> list[str]:
    """10 physical lines, 9 records: 4 good (lines 1, 2, 3, 7) and 5 rejected."""
    return [
        json.dumps(GOOD[0], ensure_ascii=False),  # 1
        json.dumps(GOOD[1]),  # 2
        json.dumps(GOOD[2], ensure_ascii=False),  # 3
        "",  # 4: blank, skipped and not counted
        json.dumps(BAD_DECIMAL),  # 5
        '{"symbol": "TRUNC", "price": "1.0',  # 6: not JSON (truncated)
        json.dumps(GOOD[3]),  # 7
        json.dumps(EMPTY_KEY),  # 8
        "[1, 2, 3]",  # 9: JSON, but a list
        json.dumps(UNREADABLE),  # 10
    ]


def run(site, tmp_path: Path, lines: list[str]):
    raw = write_raw(tmp_path, lines)
    clean = tmp_path / "clean" / "run.csv"
    rejects = tmp_path / "rejects" / "run.jsonl"
    return raw, clean, rejects, (storage(raw), storage(clean), storage(rejects))


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_clean_columns_are_fields_then_source_url_and_line(site):
    assert clean_columns(site) == [
        "symbol",
        "price",
        "volume",
        "listed_on",
        "quoted_at",
        "source_url",
        "_line",
    ]


def test_transform_counts_and_clean_rows(site, tmp_path):
    _, clean, _, paths = run(site, tmp_path, mixed_lines())
    result = transform_file(site, *paths)

    assert result["records"] == 9
    assert result["clean"] == 4
    assert result["rejected"] == 5
    assert result["reject_ratio"] == round(5 / 9, 4)
    assert result["clean_uri"] == str(paths[1])
    assert result["rejects_uri"] == str(paths[2])

    rows = read_csv(clean)
    assert rows == [
        [
            "ACME",
            "1234.50",
            "1234567",
            "2001-02-03",
            "2026-11-20T16:59:58+05:30",
            "http://demo/quotes?page=1",
            "1",
        ],
        ["NEG", "-1.37", "", "", "", "http://demo/quotes?page=1", "2"],
        ["Nestlé", "12.50", "", "", "", "http://demo/q?page=2", "3"],
        ["NOURL", "0.5", "", "", "", "", "7"],
    ]
    assert all(len(row) == len(clean_columns(site)) for row in rows)


def test_transform_rejects_say_why(site, tmp_path):
    _, _, rejects, paths = run(site, tmp_path, mixed_lines())
    transform_file(site, *paths)

    bad = read_jsonl(rejects)
    assert [b["line"] for b in bad] == [5, 6, 8, 9, 10]
    by_line = {b["line"]: b for b in bad}

    assert by_line[5]["reason"] == "price: 'n/a' is not a number"
    assert by_line[5]["record"] == BAD_DECIMAL

    assert by_line[6]["reason"].startswith("malformed JSON line:")
    assert by_line[6]["record"] == {"_raw": '{"symbol": "TRUNC", "price": "1.0'}

    assert by_line[8]["reason"] == "symbol: required field is empty"
    assert by_line[8]["record"] == EMPTY_KEY

    assert by_line[9]["reason"] == "malformed JSON line: not a JSON object"
    assert by_line[9]["record"] == {"_raw": "[1, 2, 3]"}

    assert by_line[10]["reason"] == "unreadable page: HTTP 500 after 3 retries"
    assert by_line[10]["record"] == UNREADABLE


def test_transform_summarises_top_reasons(site, tmp_path):
    bad_prices = ["n/a", "--", "abc"]
    lines = [json.dumps({"symbol": f"S{i}", "price": p}) for i, p in enumerate(bad_prices)]
    lines += [json.dumps({"symbol": f"OK{i}", "price": "1"}) for i in range(3)]
    *_, paths = run(site, tmp_path, lines)
    result = transform_file(site, *paths)
    # Grouped by field and problem, not by the value, so three bad prices count as one reason.
    assert result["top_reject_reasons"] == {"price: '…' is not a number": 3}


def test_bare_percent_cell_rejects_one_record_not_the_file(site, tmp_path):
    lines = [json.dumps({"symbol": "A", "price": "%"}), json.dumps({"symbol": "B", "price": "2"})]
    _, clean, rejects, paths = run(site, tmp_path, lines)
    result = transform_file(site, *paths)
    assert (result["clean"], result["rejected"]) == (1, 1)
    assert read_jsonl(rejects)[0]["reason"] == "price: '%' is not a number"
    assert read_csv(clean) == [["B", "2", "", "", "", "", "2"]]


def test_record_with_several_problems_lists_them_all(site):
    row, reason = normalize_record(site, {"symbol": "", "price": "abc", "volume": "1.5"})
    assert row is None
    assert reason == (
        "symbol: required field is empty; price: 'abc' is not a number; "
        "volume: '1.5' is not a whole number"
    )


def test_too_many_rejects_raise_after_writing_both_files(site, tmp_path):
    strict = site.model_copy(update={"quality": Quality(max_reject_ratio=0.2)})
    _, clean, rejects, paths = run(strict, tmp_path, mixed_lines())

    with pytest.raises(RejectRatioExceeded) as info:
        transform_file(strict, *paths)

    message = str(info.value)
    assert "site 'quotes'" in message
    assert "5 of 9 records rejected" in message
    assert "55.6%" in message
    assert "quality.max_reject_ratio 20.0%" in message
    assert str(paths[2]) in message  # where to look
    assert len(read_csv(clean)) == 4
    assert len(read_jsonl(rejects)) == 5


def test_ratio_equal_to_threshold_passes(site, tmp_path):
    half = site.model_copy(update={"quality": Quality(max_reject_ratio=0.5)})
    lines = [json.dumps({"symbol": "A", "price": "1"}), json.dumps({"symbol": "B", "price": "?"})]
    *_, paths = run(half, tmp_path, lines)
    result = transform_file(half, *paths)
    assert (result["clean"], result["rejected"], result["reject_ratio"]) == (1, 1, 0.5)


def test_empty_raw_file_writes_empty_outputs(site, tmp_path):
    _, clean, rejects, paths = run(site, tmp_path, [])
    result = transform_file(site, *paths)
    assert (result["records"], result["clean"], result["rejected"]) == (0, 0, 0)
    assert result["reject_ratio"] == 0.0
    assert clean.read_text() == ""
    assert rejects.read_text() == ""


def test_shipped_equities_site(tmp_path):
    site, _ = get_site("equities")
    record = {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "last_price": "$1,234.50",
        "change": "-0.45",
        "change_pct": "(0.45%)",
        "volume": "$12,345,678",
        "listed_on": "1980-12-12",
        "_url": "http://demo/equities/americas/2026-11-20/quotes?page=1",
    }
    _, clean, _, paths = run(site, tmp_path, [json.dumps(record)])
    assert transform_file(site, *paths)["clean"] == 1
    assert read_csv(clean) == [
        [
            "AAPL",
            "Apple Inc.",
            "1234.50",
            "-0.45",
            "-0.45",
            "12345678",
            "1980-12-12",
            record["_url"],
            "1",
        ]
    ]


def test_transform_needs_no_airflow_home(site, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.delenv("OFFPEAK_DATA_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(home))  # where a fallback to ~/airflow would write

    _, clean, rejects, paths = run(site, tmp_path, mixed_lines())
    result = transform_file(site, *paths)

    assert (result["clean"], result["rejected"]) == (4, 5)
    assert clean.is_file()
    assert rejects.is_file()
    assert not home.exists()
    # Only the published files remain: no temporary or partial files next to them.
    assert sorted(p.name for p in clean.parent.iterdir()) == ["run.csv"]
    assert sorted(p.name for p in rejects.parent.iterdir()) == ["run.jsonl", "run.keys.csv"]
