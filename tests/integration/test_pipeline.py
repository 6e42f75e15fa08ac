"""Full DAG runs (dag.test) against the demo sites and a real PostgreSQL warehouse."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from offpeak.config import get_site
from offpeak.naming import parse_dag_id
from support.queries import load_audit

pytestmark = pytest.mark.integration
TRADING_DATE = date(2026, 11, 20)  # a Friday


def run_dag(dagbag, dag_id: str, trading_date: date = TRADING_DATE, conf: dict | None = None):
    """dag.test() one DAG for the window that opens after ``trading_date``'s session."""
    parsed = parse_dag_id(dag_id)
    region = get_site(parsed.site)[1][parsed.scope]
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} not in {sorted(dagbag.dags)}"
    for task in dag.tasks:
        task.retries = 0  # a failure should fail the test now, not after backoff
    opens = datetime.combine(trading_date, region.off_peak.start, ZoneInfo(region.timezone))
    if opens.hour < 12:
        opens += timedelta(days=1)
    # The tests run at any hour: crawl now rather than wait for the region's window.
    return dag.test(logical_date=opens, run_conf={"ignore_window": True, **(conf or {})})


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def partition(warehouse, table: str, region: str, day: date = TRADING_DATE) -> list[tuple]:
    return warehouse.execute(
        f"SELECT * FROM scraped.{table} WHERE region = %s AND trading_date = %s ORDER BY 1",
        (region, day),
    ).fetchall()


def audit(warehouse, site: str, region: str) -> list[dict]:
    return load_audit(warehouse, site, region)


def xcoms(pg, dag_id: str, run_id: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(pg.uri("airflow")) as conn:
        rows = conn.execute(
            "SELECT task_id || '.' || key, value::text FROM xcom WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        ).fetchall()
    return dict(rows)


def assert_small_xcoms(pg, run) -> dict[str, str]:
    """XCom carries pointers and counts only: every value of the run is under 2 KB."""
    values = xcoms(pg, run.dag_id, run.run_id)
    data = {k for k in values if not k.endswith("._link_ExternalDagLink")}  # the marker's UI link
    assert data == {"scrape.return_value", "transform.return_value", "load.return_value"}
    for key, value in values.items():
        assert len(value.encode()) < 2048, f"{key} XCom is {len(value)} bytes"
    return values


def test_html_table_site_loads_every_valid_row(dagbag, warehouse, demo_url, pg):
    run = run_dag(dagbag, "scrape__equities__europe")
    assert run.state == "success"

    # What the site shows: 5 pages; rows with a symbol and a readable price and change.
    expected = {}
    for page in range(1, 6):
        html = fetch(f"{demo_url}/equities/europe/{TRADING_DATE}/quotes?page={page}").decode()
        for row in re.findall(r'<tr class="quote">(.*?)</tr>', html, re.S):
            cells = dict(re.findall(r'<td class="([\w-]+)">\s*(.*?)\s*</td>', row, re.S))
            if cells["symbol"] and cells["last"] not in ("n/a", "--") and cells["change"] != "abc":
                expected[cells["symbol"]] = cells
    rows = warehouse.execute(
        "SELECT symbol, name, last_price, volume, source_url FROM scraped.equities "
        "WHERE region = 'europe' AND trading_date = %s",
        (TRADING_DATE,),
    ).fetchall()
    assert len(rows) == len(expected) == 90
    assert {r[0] for r in rows} == set(expected)
    for symbol, name, last_price, volume, url in rows:
        shown = expected[symbol]
        assert name == shown["name"].replace("&amp;", "&")
        digits = re.sub(r"[^\d.]", "", shown["last"])
        assert last_price == Decimal(digits), symbol
        assert volume == (int(shown["volume"].replace(",", "")) if shown["volume"] else None)
        assert url.startswith(f"{demo_url}/equities/europe/{TRADING_DATE}/quotes?page=")

    (entry,) = audit(warehouse, "equities", "europe")
    assert (entry["rows_in_file"], entry["rows_rejected"], entry["rows_inserted"]) == (90, 10, 90)
    assert len(entry["raw_sha256"]) == 64

    values = assert_small_xcoms(pg, run)
    pointer = json.loads(values["scrape.return_value"])
    assert pointer["items"] == 100 and pointer["finish_reason"] == "finished"
    assert pointer["stats"]["pages"] >= 5


def test_json_api_site_follows_cursors_and_keeps_offsets(dagbag, warehouse, demo_url, pg):
    run = run_dag(dagbag, "scrape__fx_rates__americas")
    assert run.state == "success"
    assert_small_xcoms(pg, run)

    records, url = [], f"{demo_url}/api/fx/americas/{TRADING_DATE}"
    while url:
        body = json.loads(fetch(url))
        records += body["data"]["rates"]
        cursor = body["meta"]["next_cursor"]
        url = f"{demo_url}/api/fx/americas/{TRADING_DATE}?cursor={cursor}" if cursor else None
    good = {
        r["pair"]: r
        for r in records
        if r["bid"] not in ("", "N/A") and r["quoted_at"] != "not-a-date"
    }
    rows = warehouse.execute(
        "SELECT pair, bid, ask, quoted_at, venue FROM scraped.fx_rates "
        "WHERE region = 'americas' AND trading_date = %s",
        (TRADING_DATE,),
    ).fetchall()
    assert len(records) == 60
    assert len(rows) == len(good) == 57
    for pair, bid, ask, quoted_at, venue in rows:
        src = good[pair]
        assert bid == Decimal(src["bid"].replace(",", ""))
        assert ask == Decimal(src["ask"].replace(",", ""))
        assert quoted_at == datetime.fromisoformat(src["quoted_at"])  # same instant, any offset
        assert venue == src["venue"]["name"]


def test_listing_detail_site_and_rejects_file(dagbag, warehouse, demo_url, pg):
    run = run_dag(dagbag, "scrape__funds__india")
    assert run.state == "success"
    rows = partition(warehouse, "funds", "india")
    assert len(rows) == 28
    isins = [r[0] for r in rows]
    assert len(set(isins)) == 28 and all(re.fullmatch(r"[A-Z]{2}[A-Z0-9]{10}", i) for i in isins)
    navs = warehouse.execute(
        "SELECT count(*) FROM scraped.funds WHERE region='india' AND nav_date = %s AND nav > 0",
        (TRADING_DATE,),
    ).fetchone()
    assert navs == (28,)

    transform_out = json.loads(
        xcoms(pg, "scrape__funds__india", run.run_id)["transform.return_value"]
    )
    assert (transform_out["records"], transform_out["rejected"]) == (30, 2)
    rejects_file = Path(transform_out["rejects_uri"].removeprefix("file://"))
    rejected = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    reasons = sorted(r["reason"] for r in rejected)
    assert reasons == [
        "isin: required field is empty",
        "nav: '—' is not a number",
    ]
    assert all(r["record"]["_url"].startswith(f"{demo_url}/funds/india/") for r in rejected)


def test_same_date_twice_leaves_rows_unchanged(dagbag, warehouse):
    first = run_dag(dagbag, "scrape__fx_rates__europe")
    before = partition(warehouse, "fx_rates", "europe")
    second = run_dag(dagbag, "scrape__fx_rates__europe", conf={"trading_date": str(TRADING_DATE)})
    after = partition(warehouse, "fx_rates", "europe")
    assert (first.state, second.state) == ("success", "success")
    assert len(after) == 57
    assert after == before  # same values, and run_id/loaded_at untouched: nothing changed
    loads = audit(warehouse, "fx_rates", "europe")
    assert [(a["rows_inserted"], a["rows_unchanged"]) for a in loads] == [(57, 0), (0, 57)]
    total = warehouse.execute(
        "SELECT count(*) FROM scraped.fx_rates WHERE region = 'europe'"
    ).fetchone()
    assert total == (57,)


def test_dates_are_separate_partitions(dagbag, warehouse):
    monday = date(2026, 11, 23)
    run = run_dag(dagbag, "scrape__equities__india", trading_date=monday)
    assert run.state == "success"
    dates = warehouse.execute(
        "SELECT trading_date, count(*) FROM scraped.equities WHERE region = 'india' GROUP BY 1"
    ).fetchall()
    assert dates == [(monday, 90)]
