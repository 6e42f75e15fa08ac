"""Tests for the deterministic demo-sites server in include/demo_sites/server.py."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

SERVER_PATH = Path(__file__).parents[2] / "include/demo_sites/server.py"
README_PATH = SERVER_PATH.with_name("README.md")

ROW_RE = re.compile(r'<tr class="quote">(.*?)</tr>', re.DOTALL)
CELL_RE = re.compile(r'<td class="([a-z-]+)">(.*?)</td>', re.DOTALL)
LINK_RE = re.compile(r'<li class="fund"><a href="([^"]+)">')
NEXT_RE = re.compile(r'<a class="next" href="([^"]+)">')


def _load():
    spec = importlib.util.spec_from_file_location("demo_sites_server", SERVER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def base_url(direct_url):
    """The session's python demo server itself, not nginx in front of it: these tests check
    the bytes and headers it sends (tests/support/services.py)."""
    return direct_url


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
    assert body == b"User-agent: *\nDisallow: /private/\nDisallow: /faults/robots/\n"
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
    assert resp.status == 200 and resp.headers["Content-Length"] == "60"
    assert resp.read() == b""
    conn.close()


# --------------------------------------------------------------------------------------------
# Fault routes. Each test uses its own date: the server counts requests per path and query.
# --------------------------------------------------------------------------------------------
def quotes(date: str, page: int, fault: str | None = None, region: str = "europe") -> str:
    prefix = f"/faults/{fault}" if fault else ""
    return f"{prefix}/equities/{region}/{date}/quotes?page={page}"


def request(base_url: str, path: str, headers: dict | None = None, method: str = "GET"):
    """(status, headers, body) over a fresh connection, redirects not followed."""
    host, port = base_url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def with_prefix(body: bytes, fault: str) -> bytes:
    """The normal page as its fault route serves it: next links keep the /faults prefix."""
    return body.replace(b'href="/equities/', f'href="/faults/{fault}/equities/'.encode())


def test_fault_names_docs_and_unknown_fault(base_url):
    server = _load()
    assert server.FAULTS == (
        "truncated",
        "last_page_500",
        "offsite_next",
        "offsite_redirect",
        "malformed_keys",
        "latin1_as_utf8",
        "utf8_as_latin1",
        "retry_after",
        "retry_after_date",
        "retry_after_long",
        "flaky_503",
        "reset",
        "flaky_reset",
        "redirect_loop",
        "huge",
        "slow",
        "robots",
    )
    assert tuple(server.FAULT_DOCS) == server.FAULTS
    readme = README_PATH.read_text()
    for name, doc in server.FAULT_DOCS.items():
        assert f"| `{name}` | {doc} |" in readme
    assert b"/faults/{fault}/equities/" in fetch(base_url + "/")[2]
    assert fetch(base_url + quotes("2031-01-01", 1, "nope")) == (
        404,
        "text/plain; charset=utf-8",
        b"unknown fault\n",
    )
    assert fetch(base_url + "/faults/truncated/api/fx/europe/2031-01-01")[0] == 404
    assert fetch(base_url + quotes("2031-01-01", 6, "truncated"))[0] == 404
    assert fetch(base_url + quotes("2031-13-01", 1, "truncated"))[0] == 400


def test_fault_route_is_the_normal_site_with_prefixed_next_links(base_url):
    path, pages = quotes("2031-01-02", 1, "robots"), 0
    while path:
        status, ctype, body = fetch(base_url + path)
        pages += 1
        assert status == 200 and ctype == "text/html; charset=utf-8"
        normal = fetch(base_url + path.removeprefix("/faults/robots"))[2]
        assert body == with_prefix(normal, "robots")
        found = NEXT_RE.search(body.decode())
        path = found.group(1) if found else None
        assert path is None or path.startswith("/faults/robots/equities/europe/2031-01-02/")
    assert pages == 5
    robots = fetch(base_url + "/robots.txt")[2].decode()
    assert "Disallow: /faults/robots/" in robots.splitlines()


def test_truncated_page_3(base_url):
    date = "2031-01-03"
    normal = fetch(base_url + quotes(date, 1))[2]
    assert fetch(base_url + quotes(date, 1, "truncated"))[2] == with_prefix(normal, "truncated")
    full = with_prefix(fetch(base_url + quotes(date, 3))[2], "truncated")
    host, port = base_url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", quotes(date, 3, "truncated"))
        resp = conn.getresponse()
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(full)
        with pytest.raises(http.client.IncompleteRead) as cut:
            resp.read()  # the connection closes before the length announced
    finally:
        conn.close()
    body = cut.value.partial
    assert len(body) < len(full)
    assert len(ROW_RE.findall(body.decode())) == 7
    assert body.count(b'<tr class="quote">') == 8  # the 8th row is cut off mid-tag
    assert body.endswith(b"<td cla")
    assert b"</tbody>" not in body and b"</table>" not in body and b"</html>" not in body
    assert NEXT_RE.search(body.decode()) is None
    assert full.startswith(body)


def test_last_page_500(base_url):
    date = "2031-01-04"
    assert fetch(base_url + quotes(date, 4, "last_page_500"))[0] == 200
    for _ in range(2):
        status, ctype, _ = fetch(base_url + quotes(date, 5, "last_page_500"))
        assert status == 500 and ctype.startswith("text/plain")


def test_offsite_next_links_to_another_name_of_this_server(base_url):
    date, port = "2031-01-05", base_url.rsplit(":", 1)[1]
    body = fetch(base_url + quotes(date, 2, "offsite_next"))[2].decode()
    link = NEXT_RE.search(body).group(1)
    assert link == f"http://localhost:{port}" + quotes(date, 3, "offsite_next")
    other = request(base_url, quotes(date, 2, "offsite_next"), {"Host": f"localhost:{port}"})
    link = NEXT_RE.search(other[2].decode()).group(1)
    assert link == f"http://127.0.0.1:{port}" + quotes(date, 3, "offsite_next")
    page_1 = fetch(base_url + quotes(date, 1, "offsite_next"))[2].decode()
    assert NEXT_RE.search(page_1).group(1) == quotes(date, 2, "offsite_next")
    status, _, page_3 = fetch(link)
    assert status == 200 and len(ROW_RE.findall(page_3.decode())) == 20


def test_offsite_redirect(base_url):
    date, port = "2031-01-06", base_url.rsplit(":", 1)[1]
    status, headers, _ = request(base_url, quotes(date, 2, "offsite_redirect"))
    assert status == 302
    assert headers["Location"] == f"http://localhost:{port}" + quotes(date, 2)
    headers = request(base_url, quotes(date, 2, "offsite_redirect"), {"Host": "localhost"})[1]
    assert headers["Location"] == f"http://127.0.0.1:{port}" + quotes(date, 2)
    assert fetch(base_url + quotes(date, 1, "offsite_redirect"))[0] == 200


def test_malformed_keys(base_url):
    # On this date the normal page 1 blanks row 4's symbol; the fault restores it.
    date = "2031-02-11"
    fault_rows = rows(fetch(base_url + quotes(date, 1, "malformed_keys"))[2])
    normal_rows = rows(fetch(base_url + quotes(date, 1))[2])
    assert normal_rows[4]["symbol"] == ""
    universe = [u[0] for u in _load().equities_universe("europe")[:8]]
    assert [r["symbol"] for r in fault_rows[:8]] == universe
    assert all(r["last"] == "n/a" for r in fault_rows[:8])
    for fault_row, normal_row in zip(fault_rows[:8], normal_rows[:8], strict=True):
        assert {**fault_row, "last": "", "symbol": ""} == {
            **normal_row,
            "last": "",
            "symbol": "",
        }
    assert fault_rows[8:] == normal_rows[8:]
    page_2 = fetch(base_url + quotes(date, 2, "malformed_keys"))[2]
    assert page_2 == with_prefix(fetch(base_url + quotes(date, 2))[2], "malformed_keys")


def test_latin1_body_labelled_utf8(base_url):
    date = "2031-01-08"
    status, ctype, body = fetch(base_url + quotes(date, 1, "latin1_as_utf8"))
    assert status == 200 and ctype == "text/html; charset=utf-8"
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert b'<meta charset="utf-8">' in body
    normal = with_prefix(fetch(base_url + quotes(date, 1))[2], "latin1_as_utf8").decode()
    assert body == normal.encode("latin-1", errors="xmlcharrefreplace")


def test_utf8_body_labelled_latin1(base_url):
    date = "2031-01-09"
    status, ctype, body = fetch(base_url + quotes(date, 1, "utf8_as_latin1"))
    assert status == 200 and ctype == "text/html; charset=iso-8859-1"
    text = body.decode("utf-8")
    assert '<meta charset="iso-8859-1">' in text and 'charset="utf-8"' not in text
    normal = with_prefix(fetch(base_url + quotes(date, 1))[2], "utf8_as_latin1").decode()
    assert text == normal.replace('charset="utf-8"', 'charset="iso-8859-1"')


def test_retry_after_seconds_then_success_and_reset_faults(base_url, demo_server):
    date = "2031-01-10"
    assert fetch(base_url + quotes(date, 1, "retry_after"))[0] == 200
    for page in (2, 3):
        status, headers, body = request(base_url, quotes(date, page, "retry_after"))
        assert status == 429 and headers["Retry-After"] == "2"
        status, _, body = request(base_url, quotes(date, page, "retry_after"))
        assert status == 200 and len(ROW_RE.findall(body.decode())) == 20
    demo_server.reset_faults()
    assert demo_server.fault_counts == {}
    assert request(base_url, quotes(date, 2, "retry_after"))[0] == 429


def test_retry_after_http_date(base_url):
    date = "2031-01-11"
    status, headers, _ = request(base_url, quotes(date, 2, "retry_after_date"))
    assert status == 503
    retry_at = parsedate_to_datetime(headers["Retry-After"])
    delay = (retry_at - datetime.now(UTC)).total_seconds()
    assert -1.0 <= delay <= 2.5
    assert request(base_url, quotes(date, 2, "retry_after_date"))[0] == 200


def test_retry_after_long(base_url):
    date = "2031-01-12"
    for _ in range(2):
        status, headers, _ = request(base_url, quotes(date, 2, "retry_after_long"))
        assert status == 429 and headers["Retry-After"] == "3600"
    assert request(base_url, quotes(date, 3, "retry_after_long"))[0] == 200


def test_flaky_503(base_url):
    date = "2031-01-13"
    assert request(base_url, quotes(date, 1, "flaky_503"))[0] == 200
    answers = [request(base_url, quotes(date, 2, "flaky_503")) for _ in range(3)]
    assert [a[0] for a in answers] == [503, 503, 200]
    assert all("Retry-After" not in a[1] for a in answers)


def test_reset_every_time(base_url):
    date = "2031-01-14"
    for _ in range(2):
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
            request(base_url, quotes(date, 3, "reset"))
    assert request(base_url, quotes(date, 2, "reset"))[0] == 200


def test_flaky_reset_once(base_url):
    date = "2031-01-15"
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        request(base_url, quotes(date, 3, "flaky_reset"))
    status, _, body = request(base_url, quotes(date, 3, "flaky_reset"))
    assert status == 200 and len(ROW_RE.findall(body.decode())) == 20


def test_redirect_loop(base_url):
    date = "2031-01-16"
    path = quotes(date, 2, "redirect_loop")
    for hop in range(1, 4):
        status, headers, _ = request(base_url, path)
        assert status == 302
        path = headers["Location"]
        assert path == quotes(date, 2, "redirect_loop") + f"&hop={hop}"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(base_url + path, timeout=5)
    assert caught.value.code == 302


def test_huge_announces_60_mib(base_url):
    date = "2031-01-17"
    host, port = base_url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", quotes(date, 2, "huge"))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.headers["Content-Length"] == "62914560"
        assert resp.read(64 * 1024).startswith(b"<!DOCTYPE html>")
    finally:
        conn.close()
    status, headers, body = request(base_url, quotes(date, 2, "huge"), method="HEAD")
    assert status == 200 and headers["Content-Length"] == "62914560" and body == b""
    assert request(base_url, quotes(date, 1, "huge"))[0] == 200


def test_slow(base_url):
    started = time.monotonic()
    status, _, body = request(base_url, quotes("2031-01-18", 1, "slow"))
    assert time.monotonic() - started >= 1.9
    assert status == 200 and len(ROW_RE.findall(body.decode())) == 20
