"""A site behind a proxy (issue 27): every request of a site with ``proxy_conn_id`` goes through
Debian's tinyproxy (started here on 127.0.0.1, asking for a login), no other site's does, the
rows are exact, and the proxy's password is in no file, log, XCom or warehouse row; a proxy
that is down or refuses the login gives dead letters naming the proxy, not the site."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from test_pipeline import run_dag
from test_quality import output, xcom

from support.dagsync import dags_of, equities_variants
from support.secrets import hits, metadata_hits
from support.tinyproxy import Tinyproxy

pytestmark = pytest.mark.integration
PROXIED, DIRECT = "proxied", "direct"
PASSWORD = "pr0xy.S3cret-x_9"  # tinyproxy takes letters, digits, ".", "-" and "_"
ROWS = 90  # the demo's equities partition: 100 rows scraped, 90 loaded


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """Equities as two sites: one in americas behind the proxy, one in europe direct."""
    sites = {
        PROXIED: {"regions": ["americas"], "proxy_conn_id": "site_proxy"},
        DIRECT: {"regions": ["europe"]},
    }
    return equities_variants(tmp_path_factory.mktemp("proxy") / "config", sites)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    running = Tinyproxy(tmp_path_factory.mktemp("tinyproxy"), "offpeak", PASSWORD).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dags(config, airflow_db):
    with dags_of(config) as bag:
        yield bag


@pytest.fixture
def sites(config, dags, proxy, monkeypatch):
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))
    monkeypatch.setenv("AIRFLOW_CONN_SITE_PROXY", proxy.connection())
    return dags


def data_files(session_env, site: str, day: date) -> list[Path]:
    root = Path(session_env["env"]["OFFPEAK_DATA_ROOT"].removeprefix("file://"))
    return [p for p in root.glob(f"*/site={site}/*/date={day}/*") if p.is_file()]


def test_a_proxied_sites_requests_all_go_through_its_proxy_and_no_other_sites(
    sites, proxy, warehouse, pg, session_env, capfd, caplog
):
    day = date(2026, 6, 22)
    before = len(proxy.requests())
    run = run_dag(sites, f"scrape__{PROXIED}__americas", day)
    assert run.state == "success"
    log = output(capfd, caplog)
    through = proxy.requests()[before:]
    pages = {u for u in through if f"/equities/americas/{day}/quotes?page=" in u}
    assert len(pages) == 5, through
    assert any(u.endswith("/robots.txt") for u in through), through  # robots.txt too
    assert warehouse.execute(
        f"SELECT count(*), count(DISTINCT symbol) FROM scraped.{PROXIED} WHERE trading_date = %s",
        (day,),
    ).fetchone() == (ROWS, ROWS)
    assert f"goes through proxy 127.0.0.1:{proxy.port} (connection site_proxy)" in log

    caplog.clear()
    direct = run_dag(sites, f"scrape__{DIRECT}__europe", day)
    assert direct.state == "success"
    assert [u for u in proxy.requests()[before:] if "/europe/" in u] == []

    # The password is nowhere: the task logs, the files, the XCom, the warehouse.
    found = {"task log": hits(log + output(capfd, caplog), PASSWORD)}
    for path in data_files(session_env, PROXIED, day):
        found[str(path)] = hits(path.read_text(errors="replace"), PASSWORD)
    found["xcom"] = hits(json.dumps(xcom(pg, run, "scrape")), PASSWORD)
    import psycopg

    with psycopg.connect(pg.uri("airflow")) as conn:
        found |= metadata_hits(lambda sql: conn.execute(sql).fetchall(), PASSWORD)
    for table in (f"scraped.{PROXIED}", "scraped.load_audit"):
        rows = warehouse.execute(f"SELECT t::text FROM {table} t").fetchall()
        found[table] = hits("\n".join(r[0] for r in rows), PASSWORD)
    assert {k: v for k, v in found.items() if v} == {}
    assert hits(f"http://offpeak:{PASSWORD}@127.0.0.1", PASSWORD)  # the scan would see it


@pytest.mark.parametrize("fault", ["down", "wrong password"])
def test_a_proxy_that_is_down_or_refuses_is_named_in_the_dead_letters(
    sites, proxy, session_env, monkeypatch, fault
):
    from support.services import free_port

    day = date(2026, 6, 23) if fault == "down" else date(2026, 6, 24)
    port = free_port() if fault == "down" else proxy.port  # nothing listens on a free port
    password = "not-the-password" if fault == "wrong password" else None
    monkeypatch.setenv("AIRFLOW_CONN_SITE_PROXY", proxy.connection(password, port))
    run = run_dag(sites, f"scrape__{PROXIED}__americas", day)
    assert run.state == "failed"  # no page: its checks fail the crawl
    (letters_file,) = [p for p in data_files(session_env, PROXIED, day)
                       if p.name.endswith(".dead_letters.jsonl")]  # fmt: skip
    letters = [json.loads(line) for line in letters_file.read_text().splitlines()]
    assert letters and {letter["cause"] for letter in letters} == {"proxy"}, letters
    named = f"proxy 127.0.0.1:{port} (connection site_proxy)"
    if fault == "down":
        assert letters[0]["reason"].startswith(f"{named}: connection refused (fetching "), letters
    else:
        assert letters[0]["reason"].startswith(f"{named} answered HTTP 401 for "), letters
        assert letters[0]["reason"].endswith("instead of the site (Server: tinyproxy/1.11.1)")
    assert not hits(letters_file.read_text(), "not-the-password")


def test_a_proxy_connection_without_a_port_is_named(sites, monkeypatch):
    from offpeak.connections import proxy_connection

    monkeypatch.setenv(
        "AIRFLOW_CONN_SITE_PROXY", json.dumps({"conn_type": "http", "host": "http://p:3128"})
    )
    with pytest.raises(ValueError, match="proxy connection 'site_proxy' needs a host name and"):
        proxy_connection("site_proxy")
