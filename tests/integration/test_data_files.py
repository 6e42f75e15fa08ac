"""Data files (the data_file kind) through dag.test(): the demo server's reference rates as a
zipped wide CSV and as an ECB-layout XML feed, each melted or read to one row per (date,
currency) of the run's trading date; a run of the day's later dates revalidates the kept
download instead of fetching it again; hostile files (zip slip, an inflating bomb, an XML
entity, a moved column) each give a dead letter naming the cause and leave the partition as
it was. Served through the session's nginx, as every demo site is."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from test_pipeline import run_dag

from support import REPO
from support.dagsync import scrape_dags, shipped_config_with
from support.queries import load_audit, own_schema
from support.services import load_demo_server

pytestmark = pytest.mark.integration

SITES = REPO / "tests/fixtures/files/sites"
ENTRIES = ("fx_file_csv", "fx_file_xml")
REGION = "europe"
DAY = date(2026, 10, 6)  # a fixing day in the files, and an XLON trading day
CONN = "site_fx_files"


@pytest.fixture(scope="module")
def files_env(tmp_path_factory, nginx, airflow_db, pg, demo_server):
    """The shipped config plus the data_file sites, their connection the session's nginx;
    loads go to a warehouse schema of this module's own, files to a data root of its own."""
    from offpeak.connections import connection_var

    config = shipped_config_with(
        tmp_path_factory.mktemp("files"), [SITES / f"{e}.yaml" for e in ENTRIES]
    )
    patch = pytest.MonkeyPatch()
    with own_schema(pg, "files") as schema:
        patch.setenv("OFFPEAK_CONFIG_DIR", str(config))
        patch.setenv("OFFPEAK_WAREHOUSE_SCHEMA", schema)
        patch.setenv("OFFPEAK_DATA_ROOT", str(tmp_path_factory.mktemp("data-root")))
        patch.setenv(connection_var(CONN), f"{nginx.url}/")
        try:
            yield scrape_dags(), schema, nginx.url
        finally:
            patch.undo()


def expected_rates(day: date) -> dict[tuple, Decimal]:
    """The demo files' rates of ``day``, from the server's own table (N/A cells have none)."""
    rates = load_demo_server().file_rates()[day.isoformat()]
    return {(day, c): Decimal(r) for c, r in rates.items() if r != "N/A"}


def loaded(warehouse, schema: str, table: str, day: date) -> dict[tuple, Decimal]:
    """The partition's rates by (date, currency); none before the site's first load."""
    (exists,) = warehouse.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
    if exists is None:
        return {}
    rows = warehouse.execute(
        f'SELECT date, currency, rate FROM "{schema}"."{table}" '
        "WHERE region = %s AND trading_date = %s",
        (REGION, day),
    ).fetchall()
    return {(d, c): r for d, c, r in rows}


def file_requests(server, path: str) -> dict[str, int]:
    """The demo server's count of each kind of request for ``path``: "full 200",
    "conditional 304", ..."""
    prefix = f"files {path} "
    return {k[len(prefix) :]: n for k, n in server.fault_counts.items() if k.startswith(prefix)}


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_data_file_loads_the_trading_dates_rows_exactly(entry, files_env, warehouse):
    bag, schema, _ = files_env
    run = run_dag(bag, f"scrape__{entry}__{REGION}", DAY)
    assert run.state == "success"
    expected = expected_rates(DAY)
    assert len(expected) >= 20  # the day's currencies, less the few "N/A"
    got = loaded(warehouse, schema, entry, DAY)
    assert got == expected
    assert {str(v) for v in got.values()} == {str(v) for v in expected.values()}  # digits as sent
    (audit,) = load_audit(warehouse, entry, REGION, DAY, schema=schema)
    assert audit["complete"] is True and audit["rows_rejected"] == 0, audit


# XLON trading days of October–November 2026 with a fixing in the files (none is a closing
# day of either): the 20 dates a backfill of the CSV site runs.
BACKFILL = [
    date(2026, 10, d) for d in (7, 8, 9, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 26, 27, 28, 29, 30)
] + [date(2026, 11, 2), date(2026, 11, 3)]


def test_a_backfill_of_20_dates_downloads_the_file_once(files_env, warehouse, demo_server):
    """Every run of the day sends the kept download's validators: the server answers the first
    run in full and each later one with 304, and every date still loads its own rows."""
    bag, schema, _ = files_env
    path = "/files/fx/rates-wide.csv.zip"
    before = file_requests(demo_server, path)  # the test above downloaded it once today
    assert len(BACKFILL) == 20
    for day in BACKFILL:
        run = run_dag(bag, f"scrape__fx_file_csv__{REGION}", day)
        assert run.state == "success", day
        assert loaded(warehouse, schema, "fx_file_csv", day) == expected_rates(day), day
    after = file_requests(demo_server, path)
    new = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert after.get("full 200") == 1, after  # one full download in the whole module
    assert new == {"full 200": 0, "conditional 304": 20}, new


HOSTILE = {
    # case: (site, cause, words of the dead letter)
    "zip-slip": ("fx_file_csv", "zip_slip", "leave the archive's folder"),
    "bomb": ("fx_file_csv", "too_large", "over politeness.download_maxsize"),
    "moved": ("fx_file_csv", "columns_moved", "column 'Date' moved, it is now column 25"),
    "entity": ("fx_file_xml", "xml_entity", "declares the entities ['leak']"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_file_is_a_dead_letter_and_the_partition_stays(case, files_env, warehouse):
    """The same site and date loaded first from the good file, then crawled from its hostile
    twin (the connection moved under /hostile/<case>/): a dead letter names the cause, and
    the partition keeps every row it had."""
    from offpeak.connections import connection_var

    bag, schema, site_url = files_env
    site, cause, words = HOSTILE[case]
    day = date(2026, 11, 4)
    dag_id = f"scrape__{site}__{REGION}"
    if not loaded(warehouse, schema, site, day):
        assert run_dag(bag, dag_id, day).state == "success"
    kept = loaded(warehouse, schema, site, day)
    assert kept == expected_rates(day)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(connection_var(CONN), f"{site_url}/hostile/{case}/")
        run = run_dag(bag, dag_id, day)
    assert run.state == "failed"  # no rows: min_items fails the crawl, before any load
    letters = dead_letters(site, day, run.run_id)
    assert [d["cause"] for d in letters] == [cause], letters
    assert words in letters[0]["reason"], letters[0]["reason"]
    assert loaded(warehouse, schema, site, day) == kept


def dead_letters(site: str, day: date, run_id: str) -> list[dict]:
    from offpeak.partition import Partition
    from offpeak.pipeline import storage

    dest = storage.partition("raw", Partition(site, REGION, day, run_id))
    path = storage.dead_letters_path(dest)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
