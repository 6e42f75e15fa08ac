"""The web as production servers send it: the demo sites and pages of the tests' own through
nginx (tests/support/nginx.conf: HTTP/1.1 keep-alive, gzip on the fly, chunked), crawled for
real and loaded with dag.test(). Lawful pages load exact rows: chunked and gzipped answers,
HTML without its optional end tags, a bare fragment, UTF-16. A body cut in transfer or past
the size limit is a dead letter naming the URL and the cause, and the crawl is partial.

The reference rows come from the python demo server itself (``direct_url``), read with
regular expressions and json here, never with the project's code."""

from __future__ import annotations

import html
import http.client
import json
import re
import shutil
import urllib.request
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from test_pipeline import run_dag
from test_quality import output, xcom
from test_quality import task_states as states

from support import REPO
from support.dagsync import scrape_dags
from support.queries import load_audit

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 20)  # a Friday: a trading day in every region (as test_pipeline)
LOOSE = {"max_error_count": 2, "max_http_errors": 3}  # a site that tolerates a few errors
LAWFUL = "/fixtures/lawful"  # tests/fixtures/lawful, served by nginx
# What the pages of tests/fixtures/lawful hold: symbol, name, last price.
LAWFUL_ROWS = {
    "no-end-tags.html": [
        ("NESN", "Nestlé S.A.", "101.24"),
        ("GLE", "Société Générale", "24.915"),
        ("ZURN", "Zürich Insurance Group", "512.60"),
        ("ORSTED", "Ørsted A/S", "310.05"),
        ("SAP", "SAP SE", "178.32"),
        ("ASML", "ASML Holding N.V.", "702.10"),
    ],
    "fragment.html": [
        ("BMW", "Bayerische Motoren Werke AG", "95.48"),
        ("ENI", "Eni S.p.A.", "14.402"),
        ("IBE", "Iberdrola, S.A.", "12.335"),
        ("VOLV-B", "Volvo AB ser. B", "268.90"),
    ],
    "quotes.utf-16.html": [
        ("8035", "東京エレクトロン", "26150.0"),
        ("SKF-B", "AB SKF ser. B – ordinary", "201.40"),
        ("KNEBV", "KONE Oyj “B”", "48.76"),
        ("CEZ", "ČEZ, a. s.", "980.5"),
        ("OTP", "OTP Bank Nyrt. — Ő", "15950"),
    ],
}
LAWFUL_SITE = {
    "description": "Pages a real server may lawfully send (tests/fixtures/lawful).",
    "kind": "html_table",
    "base_url_conn_id": "site_equities",  # nginx, as every site's connection in the tests
    "start_urls": [f"{LAWFUL}/{page}" for page in LAWFUL_ROWS],
    "regions": ["europe"],
    "natural_key": ["symbol"],
    "html_table": {"rows": "table#quotes tr.q", "next_page": "a.next::attr(href)"},
    "fields": {
        "symbol": {"type": "text", "css": "td.sym::text"},
        "name": {"type": "text", "css": "td.name::text", "required": True},
        "last_price": {"type": "decimal", "css": "td.px::text", "required": True},
    },
    "politeness": {"download_delay": 0},
    "quality": {"min_items": 3},
}
EQUITIES = "/equities/{region}/{trading_date}/quotes?page="
# equities, its pages through a fault route of the demo sites (nginx in front):
CUT = "/faults/truncated" + EQUITIES  # page 3 closes mid-body: a chunked body, no last chunk
HUGE = "/faults/huge" + EQUITIES  # page 2 is 60 MiB of HTML: gzipped by nginx, chunked
SITES = {
    "lawful": LAWFUL_SITE,
    "cut_chunked": {"start_urls": [CUT + "1"], "quality": LOOSE},
    # Page 2 twice: the next link of page 1 (gzip: too large once decompressed), and nginx's
    # /identity/ route (never gzipped: too large as it streams, no Content-Length to check).
    "too_large_chunked": {"start_urls": [HUGE + "1", "/identity" + HUGE + "2"]},
}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def raw_get(base_url: str, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    """One GET asking for gzip, as Scrapy does; the answer's headers and its body as sent."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip, deflate"})
        resp = conn.getresponse()
        return resp, resp.read()  # http.client undoes the chunking, not the gzip
    finally:
        conn.close()


def assert_chunked_gzip(base_url: str, path: str) -> None:
    import gzip

    resp, body = raw_get(base_url, path)
    assert resp.status == 200
    assert resp.headers["Transfer-Encoding"] == "chunked"
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Content-Length"] is None
    assert gzip.decompress(body)  # a whole gzip stream


def no_crawl_errors(text: str) -> list[str]:
    """ERROR lines of a crawl's log (its format: ``LEVEL logger: message``)."""
    return re.findall(r"ERROR (?:offpeak|scrapy|twisted)[\w.]*: .*", text)


# ------------------------------------------------------------------------ reference rows


def equities_reference(base: str, region: str) -> dict[str, tuple]:
    """symbol -> (name, last price, volume) of every valid row of the 5 pages."""
    rows = {}
    for page in range(1, 6):
        text = fetch(f"{base}/equities/{region}/{DAY}/quotes?page={page}").decode()
        for row in re.findall(r'<tr class="quote">(.*?)</tr>', text, re.S):
            cells = dict(re.findall(r'<td class="([\w-]+)">\s*(.*?)\s*</td>', row, re.S))
            if cells["symbol"] and cells["last"] not in ("n/a", "--") and cells["change"] != "abc":
                volume = int(cells["volume"].replace(",", "")) if cells["volume"] else None
                last = Decimal(re.sub(r"[^\d.]", "", cells["last"]))
                rows[cells["symbol"]] = (html.unescape(cells["name"]), last, volume)
    return rows


def fx_reference(base: str, region: str) -> dict[str, tuple]:
    """pair -> (bid, ask, quoted_at, venue) of every valid record, all cursors followed."""
    records, url = [], f"{base}/api/fx/{region}/{DAY}"
    while url:
        doc = json.loads(fetch(url))
        records += doc["data"]["rates"]
        cursor = doc["meta"]["next_cursor"]
        url = f"{base}/api/fx/{region}/{DAY}?cursor={cursor}" if cursor else None
    return {
        r["pair"]: (
            Decimal(r["bid"].replace(",", "")),
            Decimal(r["ask"].replace(",", "")),
            datetime.fromisoformat(r["quoted_at"]),
            r["venue"]["name"],
        )
        for r in records
        if r["bid"] not in ("", "N/A") and r["quoted_at"] != "not-a-date"
    }


def funds_reference(base: str, region: str) -> dict[str, tuple]:
    """isin -> (name, nav) of every fund whose detail page has an ISIN and a NAV."""
    links, path = [], f"/funds/{region}/{DAY}/?page=1"
    while path:
        text = fetch(base + path).decode()
        links += re.findall(r'<li class="fund"><a href="([^"]+)">', text)
        found = re.search(r'<a class="next" href="([^"]+)">', text)
        path = found.group(1) if found else None
    funds = {}
    for link in links:
        text = fetch(base + link).decode()
        isin = re.search(r'<dd class="isin">(.*?)</dd>', text).group(1)
        nav = html.unescape(re.search(r'<dd class="nav">(.*?)</dd>', text, re.S).group(1)).strip()
        name = re.search(r'<h1 class="name">(.*?)</h1>', text, re.S).group(1)
        if isin and nav != "—":
            funds[isin] = (html.unescape(name).strip(), Decimal(re.sub(r"[^\d.]", "", nav)))
    return funds


# (site, region, its start path, the query of its rows, the reference)
SHIPPED = {
    "equities": (
        "europe",
        f"/equities/europe/{DAY}/quotes?page=1",
        "SELECT symbol, name, last_price, volume FROM {schema}.equities",
        equities_reference,
    ),
    "fx_rates": (
        "americas",
        f"/api/fx/americas/{DAY}",
        "SELECT pair, bid, ask, quoted_at, venue FROM {schema}.fx_rates",
        fx_reference,
    ),
    "funds": (
        "india",
        f"/funds/india/{DAY}/?page=1",
        "SELECT isin, name, nav FROM {schema}.funds",
        funds_reference,
    ),
}


# ------------------------------------------------------------------------------ the sites


@pytest.mark.parametrize("site", list(SHIPPED))
def test_shipped_sites_served_chunked_and_gzipped_load_exact_rows(
    site, dagbag, pg, warehouse, schema, demo_url, direct_url, nginx, capfd, caplog
):
    region, start, query, reference = SHIPPED[site]
    assert_chunked_gzip(demo_url, start)  # what nginx sends a client that accepts gzip
    run = run_dag(dagbag, f"scrape__{site}__{region}", DAY)
    assert run.state == "success", states(run)
    scraped = xcom(pg, run, "scrape")
    assert scraped["complete"] is True
    assert scraped["stats"].get("errors", 0) == 0  # log_count/ERROR, left out when 0
    assert no_crawl_errors(output(capfd, caplog)) == []
    # Every page the crawl fetched came chunked and gzipped (nginx's access log).
    crawled = [a for a in nginx.answers() if f"/{DAY}" in a["path"] and "offpeak" in a["agent"]]
    assert len(crawled) >= scraped["stats"]["pages"] - 1  # robots.txt is not dated
    assert {(a["status"], a["te"], a["ce"]) for a in crawled} == {("200", "chunked", "gzip")}

    expected = reference(direct_url, region)
    rows = warehouse.execute(
        query.format(schema=schema) + " WHERE region = %s AND trading_date = %s", (region, DAY)
    ).fetchall()
    assert {r[0]: tuple(r[1:]) for r in rows} == expected
    assert len(rows) == len(expected) == {"equities": 90, "fx_rates": 57, "funds": 28}[site]
    (audit,) = load_audit(warehouse, site, region, DAY, schema=schema)
    assert audit["complete"] is True and audit["rows_deleted"] == 0


# ----------------------------------------------------------------- pages of the tests' own


@pytest.fixture(scope="module")
def nginx_config(tmp_path_factory):
    """A config with this module's sites only (dag.test() parses every scrape DAG each run):
    ``lawful`` and two equities twins on fault routes."""
    config = tmp_path_factory.mktemp("nginx") / "config"
    shutil.copytree(REPO / "include/config", config)
    equities = yaml.safe_load((config / "sites/equities.yaml").read_text())
    for shipped in (config / "sites").glob("*.yaml"):
        shipped.unlink()
    for name, overrides in SITES.items():
        data = overrides if name == "lawful" else {**equities, "regions": ["europe"]}
        if name != "lawful":
            for key, value in overrides.items():
                data[key] = {**data[key], **value} if isinstance(value, dict) else value
        (config / "sites" / f"{name}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return config


@pytest.fixture(scope="module")
def nginx_dags(nginx_config, airflow_db):
    return scrape_dags(nginx_config)


@pytest.fixture
def run_site(nginx_config, nginx_dags, nginx, schema, monkeypatch):
    """``run(site)``: dag.test() the site's europe DAG on DAY, loading into the test's schema."""
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(nginx_config))

    def run(site: str):
        return run_dag(nginx_dags, f"scrape__{site}__europe", DAY)

    return run


def dead_letters(pg, run) -> list[dict]:
    uri = xcom(pg, run, "scrape")["dead_letters_uri"]
    text = Path(uri.removeprefix("file://")).read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_html_without_end_tags_a_fragment_and_utf16_load_every_row(
    run_site, pg, warehouse, schema, demo_url, capfd, caplog
):
    for page in LAWFUL_ROWS:
        assert_chunked_gzip(demo_url, f"{LAWFUL}/{page}")
    resp, _ = raw_get(demo_url, f"{LAWFUL}/quotes.utf-16.html")
    assert resp.headers["Content-Type"] == "text/html; charset=utf-16"
    page = (REPO / "tests/fixtures/lawful/no-end-tags.html").read_bytes()
    assert b"</body>" not in page and b"</html>" not in page and b"</td>" not in page
    assert (REPO / "tests/fixtures/lawful/fragment.html").read_bytes().startswith(b"<table")
    assert (REPO / "tests/fixtures/lawful/quotes.utf-16.html").read_bytes()[:2] == b"\xff\xfe"

    run = run_site("lawful")
    assert run.state == "success", states(run)
    scraped = xcom(pg, run, "scrape")
    assert scraped["complete"] is True and scraped["items"] == 15
    assert no_crawl_errors(output(capfd, caplog)) == []
    rows = warehouse.execute(
        f"SELECT source_url, symbol, name, last_price FROM {schema}.lawful "
        "WHERE region = 'europe' AND trading_date = %s",
        (DAY,),
    ).fetchall()
    loaded = {(url.rsplit("/", 1)[1], sym, name, price) for url, sym, name, price in rows}
    expected = {
        (page, sym, name, Decimal(price))
        for page, page_rows in LAWFUL_ROWS.items()
        for sym, name, price in page_rows
    }
    assert loaded == expected
    transformed = xcom(pg, run, "transform")
    assert (transformed["records"], transformed["rejected"]) == (15, 0)


def test_a_chunked_body_without_its_last_chunk_is_partial_with_a_dead_letter(
    run_site, pg, warehouse, schema, demo_url, capfd, caplog
):
    run = run_site("cut_chunked")
    assert run.state == "success", states(run)
    scraped = xcom(pg, run, "scrape")
    assert scraped["complete"] is False and "truncated" in scraped["incomplete"]
    assert scraped["items"] == 40  # pages 1 and 2; nothing of page 3
    (letter,) = dead_letters(pg, run)
    page_3 = f"{demo_url}/faults/truncated/equities/europe/{DAY}/quotes?page=3"
    assert (letter["cause"], letter["url"], letter["retries"]) == ("truncated", page_3, 2)
    assert letter["reason"].startswith(
        f"{page_3} was cut short after 2 retries: the connection closed after "
    )
    assert letter["reason"].endswith(
        " bytes of a chunked body, before its last chunk; none of its rows are stored"
    )
    text = output(capfd, caplog)
    assert "partial, so its load will add and update rows but delete none" in text
    (audit,) = load_audit(warehouse, "cut_chunked", "europe", DAY, schema=schema)
    assert (audit["complete"], audit["rows_deleted"]) == (False, 0)


def test_a_chunked_answer_above_download_maxsize_names_the_limit(
    run_site, pg, warehouse, schema, demo_url, capfd, caplog
):
    run = run_site("too_large_chunked")
    assert run.state == "success", states(run)
    scraped = xcom(pg, run, "scrape")
    assert scraped["complete"] is False and scraped["incomplete"] == {"too_large": 2}
    assert scraped["items"] == 20  # page 1
    letters = {letter["url"]: letter for letter in dead_letters(pg, run)}
    page_2 = f"{demo_url}/faults/huge/equities/europe/{DAY}/quotes?page=2"
    streamed = f"{demo_url}/identity/faults/huge/equities/europe/{DAY}/quotes?page=2"
    assert set(letters) == {page_2, streamed}
    assert all(letter["cause"] == "too_large" for letter in letters.values())
    reason = letters[streamed]["reason"]
    assert re.fullmatch(
        rf"response of at least [\d,]+ bytes from {re.escape(streamed)} \(sent without a "
        r"Content-Length\) exceeds politeness.download_maxsize 10 MiB",
        reason,
    ), reason
    reason = letters[page_2]["reason"]
    assert re.fullmatch(
        rf"response from {re.escape(page_2)} \([\d,]+ bytes compressed\) exceeds "
        r"politeness.download_maxsize 10 MiB once decompressed",
        reason,
    ), reason
    assert no_crawl_errors(output(capfd, caplog)) == []
