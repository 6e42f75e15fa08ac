"""The warehouse load on a real PostgreSQL: schema evolution, atomicity, duplicate keys."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from offpeak.config import load_site
from offpeak.warehouse import LoadCountMismatch, SchemaMismatch, load_partition

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 20)
REGIONS = {"europe": None}

SITE = {
    "kind": "json_api",
    "base_url_conn_id": "site_x",
    "start_urls": ["/x/{region}/{trading_date}"],
    "regions": ["europe"],
    "natural_key": ["code"],
    "json_api": {"records": "rows"},
    "fields": {
        "code": {"type": "text", "path": "code"},
        "price": {"type": "decimal", "path": "price"},
    },
}


@pytest.fixture
def schema(monkeypatch, warehouse):
    name = f"t_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("OFFPEAK_WAREHOUSE_SCHEMA", name)
    yield name
    warehouse.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def make_site(tmp_path: Path, **changes):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump({**SITE, **changes}))
    return load_site(path, REGIONS)


def clean_file(tmp_path: Path, lines: list[str]):
    from airflow.sdk import ObjectStoragePath

    path = tmp_path / f"{uuid.uuid4().hex}.csv"
    path.write_text("".join(line + "\n" for line in lines))
    return ObjectStoragePath(path.as_uri())


def load(pg, site, clean, expected, run_id="run1"):
    import psycopg

    with psycopg.connect(pg.uri("warehouse")) as conn:
        return load_partition(
            conn, site, clean, region="europe", trading_date=DAY, dag_id="d", run_id=run_id,
            expected_rows=expected, rows_rejected=0,
        )  # fmt: skip


def rows(warehouse, schema, cols="code, price"):
    return warehouse.execute(f"SELECT {cols} FROM {schema}.prices ORDER BY code").fetchall()


def test_duplicate_keys_in_one_file_keep_the_last(pg, warehouse, schema, tmp_path):
    site = make_site(tmp_path)
    result = load(pg, site, clean_file(tmp_path, ["A,1.5,u,1", "B,2,u,2", "A,1.75,u,3"]), 3)
    assert result["rows_inserted"] == 2
    assert rows(warehouse, schema) == [("A", Decimal("1.75")), ("B", Decimal("2"))]


def test_reload_replaces_the_partition(pg, warehouse, schema, tmp_path):
    site = make_site(tmp_path)
    load(pg, site, clean_file(tmp_path, ["A,1,u,1", "B,2,u,2", "C,3,u,3"]), 3)
    result = load(pg, site, clean_file(tmp_path, ["A,1,u,1", "B,2.5,u,2"]), 2, run_id="run2")
    assert (result["rows_unchanged"], result["rows_updated"], result["rows_deleted"]) == (1, 1, 1)
    assert rows(warehouse, schema, "code, price, run_id") == [
        ("A", Decimal("1"), "run1"),  # unchanged rows keep the run that wrote them
        ("B", Decimal("2.5"), "run2"),
    ]


def test_failed_load_leaves_previous_partition_intact(pg, warehouse, schema, tmp_path):
    site = make_site(tmp_path)
    load(pg, site, clean_file(tmp_path, ["A,1,u,1", "B,2,u,2"]), 2)
    bad = clean_file(tmp_path, ["A,9,u,1", "B,9,u,2", "C,not-a-number,u,3"])
    import psycopg

    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="not-a-number"):
        load(pg, site, bad, 3, run_id="run2")
    with pytest.raises(LoadCountMismatch, match="COPY staged 1 rows but transform wrote 5"):
        load(pg, site, clean_file(tmp_path, ["A,9,u,1"]), 5, run_id="run3")
    assert rows(warehouse, schema) == [("A", Decimal("1")), ("B", Decimal("2"))]
    audits = warehouse.execute(f"SELECT run_id FROM {schema}.load_audit").fetchall()
    assert audits == [("run1",)]


def test_new_field_adds_a_column(pg, warehouse, schema, tmp_path):
    load(pg, make_site(tmp_path), clean_file(tmp_path, ["A,1,u,1"]), 1)
    fields = {**SITE["fields"], "volume": {"type": "int", "path": "volume"}}
    site = make_site(tmp_path, fields=fields)
    load(pg, site, clean_file(tmp_path, ["A,1,12345,u,1"]), 1, run_id="run2")
    assert rows(warehouse, schema, "code, volume") == [("A", 12345)]


def test_incompatible_type_change_is_a_clear_error(pg, warehouse, schema, tmp_path):
    load(pg, make_site(tmp_path), clean_file(tmp_path, ["A,1,u,1"]), 1)
    fields = {**SITE["fields"], "price": {"type": "date", "path": "price"}}
    with pytest.raises(SchemaMismatch) as err:
        load(pg, make_site(tmp_path, fields=fields), clean_file(tmp_path, ["A,2026-01-01,u,1"]), 1)
    message = str(err.value)
    assert "site 'prices'" in message and "field 'price'" in message
    assert "numeric" in message and "type 'date'" in message
    assert rows(warehouse, schema) == [("A", Decimal("1"))]


def test_first_loads_of_several_sites_at_once_all_succeed(pg, warehouse, schema, tmp_path):
    """A fresh warehouse and eight sites loading together (what the scheduler does on day one)
    must not race on CREATE SCHEMA / CREATE TABLE."""
    import threading

    sites = []
    for n in range(8):
        folder = tmp_path / f"s{n}"
        folder.mkdir()
        path = folder / f"site{n}.yaml"
        path.write_text(yaml.safe_dump(SITE))
        sites.append((load_site(path, REGIONS), clean_file(folder, ["A,1.5,u,1", "B,2,u,2"])))
    barrier, errors, results = threading.Barrier(len(sites)), [], []

    def run(site, clean) -> None:
        barrier.wait()
        try:
            results.append(load(pg, site, clean, 2))
        except Exception as exc:  # collected and reported below
            errors.append(f"{site.name}: {exc!r}")

    threads = [threading.Thread(target=run, args=pair) for pair in sites]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(r["table"] for r in results) == sorted(f"{schema}.site{n}" for n in range(8))
    (audited,) = warehouse.execute(f"SELECT count(*) FROM {schema}.load_audit").fetchone()
    assert audited == 8
