"""JSON values kept as they are (issue 22), end to end: a JSON API that sends booleans, nested
objects and arrays, multi-line strings and numbers a float cannot hold (the demo server's
/api/typed route, through nginx) is crawled, transformed and loaded by dag.test() from a site
YAML alone; the warehouse holds each value exactly as sent. The reference is the served body
read by the standard library's json with Decimal numbers, independently of our code."""

from __future__ import annotations

import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from test_pipeline import run_dag

from support import REPO
from support.dagsync import scrape_dags
from support.queries import load_audit
from support.services import load_demo_server

pytestmark = pytest.mark.integration

DAY = date(2026, 8, 4)
DAG_ID = "scrape__typed__americas"
SITE_YAML = """\
description: JSON values kept as they are (issue 22)
kind: json_api
base_url_conn_id: site_typed
start_urls: ["/api/typed/{region}/{trading_date}"]
regions: [americas]
natural_key: [id]
json_api: {records: data.records, pagination: none}
fields:
  id:         {type: int, path: id}
  active:     {type: boolean, path: active}
  listed:     {type: boolean, path: listed, true_values: ["yes", "\u2713"], false_values: ["no", "\u2717"]}
  venue_open: {type: boolean, path: meta.venue.open}
  price:      {type: decimal, path: price}
  ratio:      {type: decimal, path: meta.ratio}
  meta:       {type: json, path: meta}
  tags:       {type: json, path: tags}
  message:    {type: text, path: message}
  title:      {type: text, path: message, whitespace: collapse}
quality: {min_items: 3, max_reject_ratio: 0}
"""  # noqa: E501


@pytest.fixture
def config(tmp_path: Path, monkeypatch, demo_url, schema) -> Path:
    """The shipped config plus the typed API's YAML; its connection is the demo sites'."""
    from offpeak.connections import connection_var

    config = tmp_path / "config"
    shutil.copytree(REPO / "include/config", config)
    (config / "sites/typed.yaml").write_text(SITE_YAML, encoding="utf-8")
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))
    monkeypatch.setenv(connection_var("site_typed"), demo_url)
    return config


def served() -> list[dict]:
    """The records as the API sends them, numbers as Decimal (no float on the way)."""
    body = load_demo_server().TYPED_BODY
    return json.loads(body, parse_float=Decimal)["data"]["records"]


def test_booleans_jsonb_text_and_decimals_round_trip_exactly(config, airflow_db, warehouse, schema):
    bag = scrape_dags()
    run = run_dag(bag, DAG_ID, DAY)
    assert run.state == "success"
    rows = warehouse.execute(
        f"SELECT id, active, listed, venue_open, price::text, ratio::text, meta::text, "
        f"tags::text, message, title FROM {schema}.typed WHERE region = 'americas' "
        "AND trading_date = %s ORDER BY id",
        (DAY,),
    ).fetchall()
    source = sorted(served(), key=lambda r: r["id"])
    assert [r[0] for r in rows] == [r["id"] for r in source] == [2, 3, 9007199254740993]
    for row, want in zip(rows, source, strict=True):
        _, active, listed, venue_open, price, ratio, meta, tags, message, title = row
        # Booleans are booleans: PostgreSQL boolean, not the text "True" or "false".
        assert active is want["active"]
        assert listed is (want["listed"] in ("\u2713", "yes"))
        venue = want["meta"].get("venue") if isinstance(want["meta"], dict) else None
        assert venue_open is (venue["open"] if venue else None)
        # Decimals digit for digit (the served literal, -0.0000000123... and 20 digits
        # before the point included).
        assert Decimal(price) == want["price"] and price == _literal(want["price"])
        if isinstance(want["meta"], dict) and "ratio" in want["meta"]:
            assert ratio == "12345678901234567890.123456789"
        # jsonb equals the source: every value and number, nested objects and arrays.
        assert json.loads(meta, parse_float=Decimal) == want["meta"]
        assert json.loads(tags, parse_float=Decimal) == want["tags"]
        # Text byte for byte: newlines, a CR LF, tabs, outer and double spaces kept.
        assert message == want["message"]
        assert title == " ".join(want["message"].split())
    # The database agrees, number for number: jsonb = the served JSON text.
    for want in source:
        text = _exact_json(want["meta"])
        (same,) = warehouse.execute(
            f"SELECT meta = %s::jsonb FROM {schema}.typed WHERE id = %s", (text, want["id"])
        ).fetchone()
        assert same, text
    assert rows[2][8] == "Line one\n  indented line two\r\n\ttabbed, trailing spaces  "
    (audit,) = load_audit(warehouse, "typed", "americas", DAY, schema=schema)
    assert (audit["rows_in_file"], audit["rows_rejected"], audit["rows_inserted"]) == (3, 0, 3)
    # Run again: the MERGE compares booleans and jsonb as equal, so nothing is rewritten.
    assert run_dag(bag, DAG_ID, DAY).state == "success"
    again = load_audit(warehouse, "typed", "americas", DAY, schema=schema)[-1]
    assert (again["rows_inserted"], again["rows_updated"], again["rows_unchanged"]) == (0, 0, 3)


def _literal(value: Decimal) -> str:
    """A Decimal as PostgreSQL's numeric prints it: positional notation."""
    return format(value, "f")


def _exact_json(value) -> str:
    """The served value as JSON text with its Decimals unrounded (by the standard library:
    each Decimal becomes a placeholder string, then its digits)."""
    marks: dict[str, str] = {}

    def mark(number: Decimal) -> str:
        key = f"@@{len(marks)}@@"
        marks[key] = str(number)
        return key

    text = json.dumps(value, default=mark)
    for key, digits in marks.items():
        text = text.replace(f'"{key}"', digits)
    return text
