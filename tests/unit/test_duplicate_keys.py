"""Records of one crawl that share a natural key: each policy of on_duplicate_key, named."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from offpeak.config import ConfigError, load_project, load_site
from offpeak.pipeline import duplicates, transform
from offpeak.pipeline.transform import transform_file

SITE_YAML = """\
kind: html_table
base_url_conn_id: site_quotes
start_urls: ["/quotes/{region}/{trading_date}"]
regions: [americas]
natural_key: [symbol]
html_table: {rows: "table tr"}
fields:
  symbol:    {type: text,     css: "td.symbol::text"}
  price:     {type: decimal,  css: "td.price::text", required: true}
quality:
  max_reject_ratio: 0.9
"""
P1, P2 = "http://demo/quotes?page=1", "http://demo/quotes?page=2"
FEED = [
    {"symbol": "ACME", "price": "1.00", "_url": P1},  # line 1
    {"symbol": "BOLT", "price": "2.00", "_url": P1},  # line 2
    {"symbol": "ACME", "price": "1.10", "_url": P2},  # line 3: ACME again, a new price
    {"symbol": "CORE", "price": "n/a", "_url": P2},  # line 4: rejected for its price
]


def site_with(tmp_path: Path, extra: str = "", yaml_text: str = SITE_YAML):
    path = tmp_path / "config" / "quotes.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml_text + extra, encoding="utf-8")
    return load_site(path, load_project().regions)


def run(site, tmp_path: Path, records: list[dict] | list[str]):
    raw = tmp_path / "raw.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    raw.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    clean, rejects = tmp_path / "clean.csv", tmp_path / "rejects.jsonl"
    paths = [ObjectStoragePath(p.as_uri()) for p in (raw, clean, rejects)]
    result = transform_file(site, *paths)
    keys = Path(ObjectStoragePath(result["rejected_keys_uri"]).path)
    with clean.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    bad = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    return result, rows, bad, keys.read_text(encoding="utf-8").splitlines()


def test_reject_is_the_default_and_every_copy_is_rejected_naming_key_lines_and_pages(
    tmp_path, caplog
):
    site = site_with(tmp_path)
    assert site.on_duplicate_key == "reject"
    with caplog.at_level(logging.WARNING, logger="offpeak.pipeline.duplicates"):
        result, rows, bad, keys = run(site, tmp_path, FEED)
    assert rows == [["BOLT", "2.00", P1, "2"]]
    dupes = [b for b in bad if b["line"] in (1, 3)]
    assert [b["line"] for b in dupes] == [1, 3]
    reason = dupes[0]["reason"]
    assert reason == dupes[1]["reason"]
    assert reason.startswith("duplicate natural key symbol='ACME': 2 records of this crawl")
    assert f"line 1 ({P1}), line 3 ({P2})" in reason
    assert "every copy is rejected (on_duplicate_key: reject)" in reason
    assert dupes[1]["record"] == {"symbol": "ACME", "price": "1.10", "_url": P2}
    # The key is kept: the load spares the key's row already in the warehouse.
    assert "ACME" in keys
    assert (result["records"], result["clean"], result["rejected"]) == (4, 1, 3)
    assert (result["duplicate_keys"], result["duplicate_records"]) == (1, 2)
    assert result["top_reject_reasons"]["duplicate natural key"] == 2
    assert "1 natural key(s) on more than one record of this crawl" in caplog.text
    assert f"symbol='ACME': line 1 ({P1}), line 3 ({P2})" in caplog.text


@pytest.mark.parametrize(
    ("policy", "price", "line"), [("first", "1.00", "1"), ("last", "1.10", "3")]
)
def test_first_or_last_loads_one_copy_counted_and_logged(tmp_path, caplog, policy, price, line):
    site = site_with(tmp_path, f"on_duplicate_key: {policy}\n")
    with caplog.at_level(logging.WARNING, logger="offpeak.pipeline.duplicates"):
        result, rows, bad, _ = run(site, tmp_path, FEED)
    assert sorted(rows) == sorted([["ACME", price, P1 if line == "1" else P2, line],
                                   ["BOLT", "2.00", P1, "2"]])  # fmt: skip
    assert [b["line"] for b in bad] == [4]  # only the bad price
    assert (result["records"], result["clean"], result["rejected"]) == (4, 2, 1)
    assert (result["duplicate_keys"], result["duplicate_records"]) == (1, 1)
    assert f"(on_duplicate_key: {policy})" in caplog.text
    assert "symbol='ACME'" in caplog.text


def test_keys_compare_as_the_warehouse_compares_them(tmp_path):
    """1.5 and 1.50 are one decimal; two times at one instant are one timestamptz."""
    yaml_text = SITE_YAML.replace("natural_key: [symbol]", "natural_key: [price, at]").replace(
        "quality:", '  at:        {type: datetime, css: "td.at::text"}\nquality:'
    )
    site = site_with(tmp_path, yaml_text=yaml_text)
    result, rows, bad, _ = run(site, tmp_path, [
        {"symbol": "A", "price": "1.5", "at": "2026-11-20T17:00:00+01:00"},
        {"symbol": "B", "price": "1.50", "at": "2026-11-20T16:00:00+00:00"},
        {"symbol": "C", "price": "1.50", "at": "2026-11-20T16:00:01+00:00"},
    ])  # fmt: skip
    assert [r[0] for r in rows] == ["C"]
    assert result["duplicate_keys"] == 1
    assert bad[0]["reason"].startswith("duplicate natural key (price, at)=('1.5', ")


def test_copies_written_the_fast_way_and_the_per_record_way_are_found(tmp_path, monkeypatch):
    """A line polars cannot read sends its whole block the per-record way: a key first seen in
    a fast block and again in such a block is still one repeated key."""
    monkeypatch.setattr(transform, "BLOCK_BYTES", 4096)
    site = site_with(tmp_path)
    records = [json.dumps({"symbol": f"S{i:04d}", "price": "1", "_url": P1}) for i in range(400)]
    records[300] = '{"symbol": "BROKEN" "price": "1"}'  # no comma: its block goes line by line
    records[301] = json.dumps({"symbol": "S0005", "price": "9", "_url": P2})
    result, rows, bad, _ = run(site, tmp_path, records)
    assert result["duplicate_keys"] == 1
    assert "S0005" not in {r[0] for r in rows}
    assert {b["line"] for b in bad if "S0005" in b["reason"]} == {6, 302}
    assert len(rows) == 400 - 1 - 2
    # Every other row is written as it was, in feed order.
    assert [int(r[-1]) for r in rows] == sorted(int(r[-1]) for r in rows)


@pytest.mark.parametrize("spill_rows", [1 << 18, 7])
def test_repeats_are_found_alike_when_the_hashes_spill_to_disk(tmp_path, monkeypatch, spill_rows):
    """A long crawl's key hashes go to disk by bucket (memory stays flat): repeats far apart,
    in different spills and blocks, are found as in memory, and no hash file is left behind."""
    monkeypatch.setattr(transform, "BLOCK_BYTES", 1024)
    monkeypatch.setattr(duplicates, "SPILL_ROWS", spill_rows)
    spilled = []
    real_spill = duplicates.KeyLedger._spill
    monkeypatch.setattr(
        duplicates.KeyLedger, "_spill", lambda self: spilled.append(1) or real_spill(self)
    )
    site = site_with(tmp_path, "on_duplicate_key: last\n")
    records = [{"symbol": f"S{i:03d}", "price": "1", "_url": P1} for i in range(300)]
    records += [{"symbol": s, "price": "2", "_url": P2} for s in ("S001", "S150", "S299")]
    result, rows, bad, _ = run(site, tmp_path, records)
    assert bool(spilled) == (spill_rows == 7)
    assert (result["duplicate_keys"], result["duplicate_records"]) == (3, 3)
    assert bad == []
    prices = {r[0]: (r[1], r[-1]) for r in rows}
    assert len(rows) == 300
    assert prices["S001"] == ("2", "301") and prices["S299"] == ("2", "303")
    assert prices["S002"] == ("1", "3")
    assert not list(tmp_path.glob(".offpeak-keys-*"))


def test_an_unknown_policy_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="on_duplicate_key"):
        site_with(tmp_path, "on_duplicate_key: newest\n")
