"""Tests for the deterministic demo-sites server in include/demo_sites/server.py."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

SERVER_PATH = Path(__file__).parents[2] / "include/demo_sites/server.py"

ROW_RE = re.compile(r'<tr class="quote">(.*?)</tr>', re.DOTALL)
CELL_RE = re.compile(r'<td class="([a-z-]+)">(.*?)</td>', re.DOTALL)
LINK_RE = re.compile(r'<li class="fund"><a href="([^"]+)">')
NEXT_RE = re.compile(r'<a class="next" href="([^"]+)">')


def _load():
    spec = importlib.util.spec_from_file_location("demo_sites_server", SERVER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base_url():
    server = _load().make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def rows(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    return [{c: v.strip() for c, v in CELL_RE.findall(r)} for r in ROW_RE.findall(text)]


def is_malformed_quote(row: dict[str, str]) -> bool:
    # Documented rule: empty symbol, last "n/a" or "--", or change "abc".
    return row["symbol"] == "" or row["last"] in ("n/a", "--") or row["change"] == "abc"


def is_malformed_rate(rate: dict) -> bool:
    # Documented rule: bid "" or "N/A", or quoted_at "not-a-date"; everything else parses.
    try:
        float(rate["bid"].replace(",", ""))
        float(rate["ask"].replace(",", ""))
        stamp = datetime.fromisoformat(rate["quoted_at"])
    except ValueError:
        return True
    assert stamp.utcoffset() is not None
    return False


def test_same_url_same_bytes(base_url):
    for path in (
        "/equities/europe/2024-03-15/quotes?page=2",
        "/api/fx/europe/2024-03-15",
        "/funds/europe/2024-03-15/?page=1",
    ):
        first, second = fetch(base_url + path), fetch(base_url + path)
        assert first[0] == 200
        assert first[2] == second[2]
    default = fetch(base_url + "/equities/europe/2024-03-15/quotes")[2]
    assert default == fetch(base_url + "/equities/europe/2024-03-15/quotes?page=1")[2]


def test_dates_change_prices_not_symbols(base_url):
    a = rows(fetch(base_url + "/equities/americas/2024-03-14/quotes?page=1")[2])
    b = rows(fetch(base_url + "/equities/americas/2024-03-15/quotes?page=1")[2])
    assert len(a) == len(b) == 20
    assert [r["last"] for r in a] != [r["last"] for r in b]
    # Same symbols in the same order; a malformed row may blank its symbol cell on one date.
    for ra, rb in zip(a, b, strict=True):
        assert ra["symbol"] == rb["symbol"] or "" in (ra["symbol"], rb["symbol"])
    assert {r["name"] for r in a} == {r["name"] for r in b}
    sym_a = {r["symbol"] for r in a} - {""}
    sym_b = {r["symbol"] for r in b} - {""}
    assert len(sym_a) >= 18 and len(sym_b) >= 18 and len(sym_a | sym_b) <= 20
    assert all(r["last"].startswith("$") for r in a if not is_malformed_quote(r))


def test_regions_have_different_universes(base_url):
    a = rows(fetch(base_url + "/equities/europe/2024-03-15/quotes?page=1")[2])
    b = rows(fetch(base_url + "/equities/some_new_region/2024-03-15/quotes?page=1")[2])
    sym_a = {r["symbol"] for r in a} - {""}
    sym_b = {r["symbol"] for r in b} - {""}
    assert sym_a != sym_b and len(sym_a & sym_b) < 5
    fx_a = json.loads(fetch(base_url + "/api/fx/europe/2024-03-15")[2])
    fx_b = json.loads(fetch(base_url + "/api/fx/india/2024-03-15")[2])
    pairs_a = {r["pair"] for r in fx_a["data"]["rates"]}
    assert pairs_a != {r["pair"] for r in fx_b["data"]["rates"]}


def test_equities_pagination_and_malformed_rows(base_url):
    path = "/equities/europe/2024-03-15/quotes?page=1"
    all_rows: list[dict[str, str]] = []
    pages = 0
    while path:
        status, ctype, body = fetch(base_url + path)
        assert status == 200 and ctype == "text/html; charset=utf-8"
        pages += 1
        assert body.count(b'<tr class="quote"') == 20
        page_rows = rows(body)
        assert sum(is_malformed_quote(r) for r in page_rows) == 2
        all_rows.extend(page_rows)
        found = NEXT_RE.search(body.decode())
        path = found.group(1) if found else None
    assert pages == 5
    assert len(all_rows) == 100
    assert sum(is_malformed_quote(r) for r in all_rows) == 10
    symbols = [r["symbol"] for r in all_rows if r["symbol"]]
    assert len(symbols) == len(set(symbols)) >= 90
    assert all(re.fullmatch(r"[A-Z]{3,5}", s) for s in symbols)
    for r in all_rows:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["listed"])
        assert r["volume"] == "" or re.fullmatch(r"\d{1,3}(,\d{3})*", r["volume"])
        if not is_malformed_quote(r):
            assert re.fullmatch(r"€\d{1,3}(,\d{3})*\.\d{2}", r["last"])
            assert re.fullmatch(r"[+-]?[\d,]+\.\d{2}|\([\d,]+\.\d{2}\)", r["change"])
    assert fetch(base_url + "/equities/europe/2024-03-15/quotes?page=6")[0] == 404
    assert fetch(base_url + "/equities/europe/2024-03-15/quotes?page=0")[0] == 404


def test_fx_cursor_pagination(base_url):
    url = base_url + "/api/fx/oceania/2024-03-15"
    records, sizes, cursor = [], [], None
    while True:
        status, ctype, body = fetch(url + (f"?cursor={cursor}" if cursor else ""))
        assert status == 200 and ctype == "application/json"
        doc = json.loads(body.decode("utf-8"))
        assert doc["meta"]["region"] == "oceania"
        assert doc["meta"]["date"] == "2024-03-15"
        sizes.append(len(doc["data"]["rates"]))
        records.extend(doc["data"]["rates"])
        cursor = doc["meta"]["next_cursor"]
        if cursor is None:
            break
    assert sizes == [25, 25, 10]
    assert len({r["pair"] for r in records}) == 60
    assert sum(is_malformed_rate(r) for r in records) == 3
    assert all(isinstance(r["mid"], float) for r in records)
    assert fetch(url + "?cursor=bogus")[0] == 400
    status, _, body = fetch(url + "?cursor=bogus")
    assert json.loads(body) == {"error": "invalid cursor"}


def test_funds_listing_and_details(base_url):
    path, links, pages = "/funds/asia_pacific/2024-03-15/?page=1", [], 0
    while path:
        body = fetch(base_url + path)[2].decode("utf-8")
        pages += 1
        links.extend(LINK_RE.findall(body))
        found = NEXT_RE.search(body)
        path = found.group(1) if found else None
    assert pages == 3
    assert len(links) == len(set(links)) == 30
    malformed = 0
    for link in links:
        status, ctype, body = fetch(base_url + link)
        assert status == 200 and ctype == "text/html; charset=utf-8"
        text = body.decode("utf-8")
        nav = re.search(r'<dd class="nav">(.*?)</dd>', text, re.DOTALL).group(1).strip()
        isin = re.search(r'<dd class="isin">(.*?)</dd>', text).group(1)
        assert re.search(r'<dd class="nav-date">2024-03-15</dd>', text)
        malformed += nav == "—" or isin == ""
        if isin:
            assert re.fullmatch(r"[A-Z]{2}[A-Z0-9]{10}", isin)
    assert malformed == 2
    no_slash = fetch(base_url + "/funds/asia_pacific/2024-03-15?page=2")
    assert no_slash[0] == 200
    assert no_slash[2] == fetch(base_url + "/funds/asia_pacific/2024-03-15/?page=2")[2]
    assert fetch(base_url + "/funds/asia_pacific/2024-03-15/f-9999-zzzz")[0] == 404


def test_robots_errors_and_unknown_paths(base_url):
    status, ctype, body = fetch(base_url + "/robots.txt")
    assert status == 200 and ctype.startswith("text/plain")
    assert body == b"User-agent: *\nDisallow: /private/\n"
    assert fetch(base_url + "/private/secret")[0] == 403
    assert fetch(base_url + "/equities/europe/2024-13-45/quotes")[0] == 400
    assert fetch(base_url + "/equities/europe/yesterday/quotes")[0] == 400
    assert fetch(base_url + "/api/fx/europe/2024-02-30")[0] == 400
    assert fetch(base_url + "/funds/europe/not-a-date/")[0] == 400
    status, ctype, _ = fetch(base_url + "/nope")
    assert status == 404 and ctype.startswith("text/plain")
    assert fetch(base_url + "/equities/Europe/2024-03-15/quotes")[0] == 404


def test_main_prints_address_and_exits_on_sigterm():
    cmd = [sys.executable, str(SERVER_PATH), "--port", "0"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline().strip()
            assert line.startswith("demo sites listening on http://127.0.0.1:")
            url = line.rsplit(" ", 1)[1]
            assert fetch(url + "/robots.txt")[0] == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_keep_alive_is_fast_and_head_has_no_body(base_url):
    host, port = base_url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    started = time.monotonic()
    for day in range(1, 21):
        conn.request("GET", f"/api/fx/europe/2024-04-{day:02d}")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
    assert time.monotonic() - started < 1.0  # no per-request delayed-ACK stalls
    conn.request("HEAD", "/robots.txt")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Length"] == "34"
    assert resp.read() == b""
    conn.close()
