"""The warehouse load on a real PostgreSQL: schema evolution, atomicity, duplicate keys."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from offpeak.config import load_site
from offpeak.partition import Partition
from offpeak.warehouse.load import CleanFile, LoadCountMismatch, load_partition
from offpeak.warehouse.schema import SchemaMismatch
from support.queries import load_audit

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


def make_site(tmp_path: Path, **changes):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump({**SITE, **changes}))
    return load_site(path, REGIONS)


def clean_file(tmp_path: Path, lines: list[str]):
    from airflow.sdk import ObjectStoragePath

    path = tmp_path / f"{uuid.uuid4().hex}.csv"
    path.write_text("".join(line + "\n" for line in lines))
    return ObjectStoragePath(path.as_uri())


def load(pg, site, clean, expected, run_id="run1", **kwargs):
    import psycopg

    part = Partition(site.name, "europe", DAY, run_id)
    with psycopg.connect(pg.uri("warehouse")) as conn:
        return load_partition(conn, site, part, CleanFile(clean, expected, **kwargs), dag_id="d")


def audit_rows(warehouse, schema):
    return load_audit(warehouse, columns="run_id, rows_deleted, complete", schema=schema)


TEN = [f"K{i},{i},u,{i}" for i in range(10)]


def test_a_load_that_would_delete_too_much_changes_nothing(pg, warehouse, schema, tmp_path):
    from offpeak.pipeline.quality import QualityCheckFailed

    site = make_site(tmp_path)  # max_delete_ratio 10% by default, on_excess_delete: fail
    load(pg, site, clean_file(tmp_path, TEN), 10)
    before = rows(warehouse, schema)
    # A source that lists 7 of the 10 keys, one of them with a new price: 3 deletes is 30%.
    seven = ["K0,100,u,1", *TEN[1:7]]
    with pytest.raises(QualityCheckFailed) as err:
        load(pg, site, clean_file(tmp_path, seven), 7, run_id="run2")
    assert str(err.value) == (
        f"the load of site prices region europe {DAY} would delete 3 of the partition's 10 rows "
        "(30%; keys the new file lacks, e.g. K7, K8, K9), above quality.max_delete_ratio 10%: "
        "nothing was changed, the previous rows stay (on_excess_delete: fail). If the site "
        "really dropped them, raise quality.max_delete_ratio in sites/prices.yaml and clear "
        "this load task"
    )
    assert rows(warehouse, schema) == before  # not even K0's new price
    assert audit_rows(warehouse, schema) == [("run1", 0, True)]
    # One delete in ten is within the limit.
    result = load(pg, site, clean_file(tmp_path, TEN[:9]), 9, run_id="run3")
    assert result["rows_deleted"] == 1


def test_on_excess_delete_warn_loads_without_deleting(pg, warehouse, schema, tmp_path, caplog):
    site = make_site(tmp_path, quality={"on_excess_delete": "warn"})
    load(pg, site, clean_file(tmp_path, TEN), 10)
    result = load(pg, site, clean_file(tmp_path, ["K0,100,u,1", *TEN[1:5]]), 5, run_id="run2")
    assert (result["rows_updated"], result["rows_deleted"], result["complete"]) == (1, 0, False)
    assert len(rows(warehouse, schema)) == 10
    assert rows(warehouse, schema)[0] == ("K0", Decimal("100"))
    assert "would delete 5 of the partition's 10 rows (50%" in caplog.text
    assert "no row deleted, new and changed rows loaded, audited complete=false" in caplog.text
    assert audit_rows(warehouse, schema)[-1] == ("run2", 0, False)


def test_a_rejected_record_keeps_its_keys_earlier_row(pg, warehouse, schema, tmp_path):
    from airflow.sdk import ObjectStoragePath

    site = make_site(tmp_path, quality={"max_delete_ratio": 0.5})
    load(pg, site, clean_file(tmp_path, TEN), 10)
    # Today K3 and K4 were rejected (their price unreadable) and K9 is gone from the source.
    keys = tmp_path / "rejected.keys.csv"
    keys.write_text("K3\nK4\n")
    today = [line for line in TEN if line.split(",")[0] not in ("K3", "K4", "K9")]
    result = load(
        pg, site, clean_file(tmp_path, today), 7, run_id="run2",
        kept_keys=ObjectStoragePath(keys.as_uri()),
    )  # fmt: skip
    assert result["rows_deleted"] == 1
    assert [r[0] for r in rows(warehouse, schema)] == [f"K{i}" for i in range(9)]
    assert rows(warehouse, schema)[3] == ("K3", Decimal("3"))  # yesterday's good value


def rows(warehouse, schema, cols="code, price"):
    return warehouse.execute(f"SELECT {cols} FROM {schema}.prices ORDER BY code").fetchall()


def test_duplicate_keys_in_one_file_keep_the_last(pg, warehouse, schema, tmp_path, caplog):
    site = make_site(tmp_path)
    result = load(pg, site, clean_file(tmp_path, ["A,1.5,u,1", "B,2,u,2", "A,1.75,u,3"]), 3)
    assert result["rows_inserted"] == 2
    # The transform settles repeated keys first; one that still reaches the load is named.
    assert "the clean file repeats 1 natural key(s) (A)" in caplog.text
    assert load_audit(warehouse, columns="duplicate_keys", schema=schema) == [(1,)]
    assert rows(warehouse, schema) == [("A", Decimal("1.75")), ("B", Decimal("2"))]
    # Again into the loaded partition (the merge, not the first load's plain insert).
    again = ["B,2,u,1", "A,1,u,2", "C,3,u,3", "A,1.5,u,4", "C,3.5,u,5"]
    result = load(pg, site, clean_file(tmp_path, again), 5, run_id="run2")
    assert (result["rows_inserted"], result["rows_updated"], result["rows_unchanged"]) == (1, 1, 1)
    assert result["partition_rows"] == 3
    assert rows(warehouse, schema) == [
        ("A", Decimal("1.5")),
        ("B", Decimal("2")),
        ("C", Decimal("3.5")),
    ]


def test_reload_replaces_the_partition(pg, warehouse, schema, tmp_path):
    # Deleting 1 of 3 keys is 33%: this site allows it (the default allows 10%).
    site = make_site(tmp_path, quality={"max_delete_ratio": 0.5})
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


def test_the_transforms_duplicate_count_is_audited(pg, warehouse, schema, tmp_path):
    site = make_site(tmp_path)
    result = load(pg, site, clean_file(tmp_path, ["B,2,u,2"]), 1, duplicate_keys=3)
    assert result["duplicate_keys"] == 3
    assert load_audit(warehouse, columns="duplicate_keys", schema=schema) == [(3,)]


def test_an_audit_table_from_before_duplicate_keys_gets_the_column(pg, warehouse, schema):
    """A warehouse created before the column existed: the next load adds it (0 for the old
    rows) and fills it."""
    import psycopg

    from offpeak.warehouse.schema import ensure_schema

    with psycopg.connect(pg.uri("warehouse")) as conn:
        ensure_schema(conn)
    warehouse.execute(f"ALTER TABLE {schema}.load_audit DROP COLUMN duplicate_keys")
    warehouse.execute(
        f"INSERT INTO {schema}.load_audit (site, region, trading_date, dag_id, run_id, "
        "clean_uri, rows_in_file, rows_rejected, rows_inserted, rows_updated, rows_unchanged, "
        "rows_deleted) VALUES ('old', 'europe', '2026-01-02', 'd', 'r', 'c', 1, 0, 1, 0, 0, 0)"
    )
    with psycopg.connect(pg.uri("warehouse")) as conn:
        ensure_schema(conn)
    assert load_audit(warehouse, columns="site, duplicate_keys", schema=schema) == [("old", 0)]
