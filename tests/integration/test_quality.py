"""Quality checks in real runs (dag.test against the demo sites, a real PostgreSQL): a crawl
monitor or a post-load check that fails the run, and leaves the warehouse as it was."""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from offpeak.config import get_site
from offpeak.partition import Partition
from offpeak.pipeline.quality import QualityCheckFailed
from offpeak.warehouse.load import CleanFile, load_partition
from support import REPO
from support.queries import load_audit

pytestmark = pytest.mark.integration


@pytest.fixture
def config_copy(tmp_path: Path, monkeypatch):
    """``make(site, **quality)``: a copy of include/config with the site's quality section
    changed, read by the runs' tasks (OFFPEAK_CONFIG_DIR)."""

    def make(site: str, **quality) -> None:
        config = tmp_path / "config"
        if not config.exists():
            shutil.copytree(REPO / "include/config", config)
        path = config / "sites" / f"{site}.yaml"
        data = yaml.safe_load(path.read_text())
        data["quality"].update(quality)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))

    return make


def run(dagbag, monkeypatch, dag_id: str, day: str, retries: int | None = 0):
    """dag.test() one date; ``retries=None`` keeps the site's retries."""
    dag = dagbag.get_dag(dag_id)
    for task in dag.tasks:
        if retries is not None:
            monkeypatch.setattr(task, "retries", retries)  # fail now, not after backoff
    return dag.test(run_conf={"trading_date": day, "ignore_window": True})


def xcom(pg, run, task_id: str) -> dict:
    import psycopg

    with psycopg.connect(pg.uri("airflow")) as conn:
        row = conn.execute(
            "SELECT value::text FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = %s "
            "AND key = 'return_value'",
            (run.dag_id, run.run_id, task_id),
        ).fetchone()
    return json.loads(row[0]) if row else {}


def output(capfd, caplog) -> str:
    """What the runs printed (the task log, failures) and logged through Python logging."""
    captured = capfd.readouterr()
    return captured.out + captured.err + caplog.text


def task_states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def partition(warehouse, schema: str, table: str, region: str, day: str) -> list[tuple]:
    return warehouse.execute(
        f"SELECT * FROM {schema}.{table} WHERE region = %s AND trading_date = %s ORDER BY 1",
        (region, day),
    ).fetchall()


def audit(warehouse, schema: str, site: str, region: str) -> list[tuple]:
    return load_audit(
        warehouse, site, region, columns="trading_date::text, run_id, rows_in_file", schema=schema
    )


def load_directly(pg, site_name: str, region: str, day: str, rows: list[dict], tmp_path):
    """Load a clean CSV written here, the way the load task does (checks included)."""
    import psycopg

    from offpeak.pipeline.transform import clean_columns

    site, _ = get_site(site_name)
    path = tmp_path / f"{uuid.uuid4().hex}.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        for line, row in enumerate(rows, start=1):
            values = {**row, "source_url": "http://test/", "_line": line}
            writer.writerow([values.get(c) for c in clean_columns(site)])
    with psycopg.connect(pg.uri("warehouse")) as conn:
        part = Partition(site.name, region, date.fromisoformat(day), f"direct-{day}")
        return load_partition(conn, site, part, CleanFile(path, len(rows)), dag_id="test")


def fx_rows(n: int) -> list[dict]:
    return [
        {"pair": f"P{i:03d}/USD", "bid": "1.1", "ask": "1.2", "mid": "1.15", "volume": "100",
         "quoted_at": "2026-07-01T12:00:00+00:00"}
        for i in range(n)
    ]  # fmt: skip


def test_field_coverage_below_min_fails_the_crawl_and_loads_nothing(
    dagbag, pg, warehouse, schema, config_copy, monkeypatch, capfd, caplog
):
    # The demo serves one empty bid in 60 records: 98.3% can never meet 100%.
    config_copy("fx_rates", min_field_coverage={"bid": 1.0, "ask": 1.0})
    result = run(dagbag, monkeypatch, "scrape__fx_rates__americas", "2026-07-02")
    assert result.state == "failed"
    assert task_states(result)["scrape"] == "failed"
    assert xcom(pg, result, "scrape") == {}
    text = output(capfd, caplog)
    assert (
        "quality check field_coverage failed for site fx_rates region americas 2026-07-02: "
        "field 'bid' present in 59 of 60 items (98.3%), below min 100%"
    ) in text
    # Every monitor's result is in the task log, one line each.
    assert "Quality check field_coverage passed: field 'ask' present in 60 of 60 items" in text
    assert "Quality check http_errors passed: 0 responses with status >= 400" in text
    (table,) = warehouse.execute("SELECT to_regclass(%s)", (f"{schema}.fx_rates",)).fetchone()
    assert table is None  # the load never ran: not even the table was made


def test_a_value_out_of_range_rolls_the_load_back(
    dagbag, pg, warehouse, schema, config_copy, monkeypatch, capfd, caplog, tmp_path
):
    day = "2026-07-01"
    good = load_directly(pg, "fx_rates", "americas", day, fx_rows(5), tmp_path)
    assert good["checks"] == {
        "natural_key": "passed", "row_count": "skipped", "range.bid": "passed",
        "range.ask": "passed", "range.mid": "passed", "range.volume": "passed",
    }  # fmt: skip
    before = partition(warehouse, schema, "fx_rates", "americas", day)
    audit_before = audit(warehouse, schema, "fx_rates", "americas")
    assert len(before) == 5

    # The demo's bids run from about 0.5 to about 1,700: a max of 2 cannot be met.
    # max_delete_ratio 1: the 5 keys loaded above are not the demo's, and the range check,
    # not the deletion guard, is what this test is about.
    config_copy(
        "fx_rates", ranges={"bid": {"min": 0.1, "max": 2}, "ask": {"min": 0}}, max_delete_ratio=1
    )
    # With the site's 2 retries: a load check fails the same way on the same file, so the
    # task fails at once instead of retrying.
    result = run(dagbag, monkeypatch, "scrape__fx_rates__americas", day, retries=None)
    assert result.state == "failed"
    states = task_states(result)
    assert (states["scrape"], states["transform"], states["load"]) == ("success",) * 2 + ("failed",)
    (load,) = [ti for ti in result.get_task_instances() if ti.task_id == "load"]
    assert load.try_number == 1
    text = output(capfd, caplog)
    # The numbers the check saw in the rolled-back partition, counted from the clean file.
    cleaned = xcom(pg, result, "transform")
    with open(cleaned["clean_uri"].removeprefix("file://"), newline="") as src:
        bids = [Decimal(r[1]) for r in csv.reader(src)]
    outside = sum(not Decimal("0.1") <= b <= 2 for b in bids)
    assert len(bids) == 57 and 0 < outside < 57
    assert (
        "quality check range failed for site fx_rates region americas 2026-07-01: "
        f"field 'bid': {outside} of 57 values outside min 0.1, max 2 "
        f"(lowest {min(bids)}, highest {max(bids)})"
    ) in text
    assert "Quality check range passed: field 'ask': 0 of 57 values outside min 0" in text
    # The previous good load of the date is exactly as it was; no audit row for the failure.
    assert partition(warehouse, schema, "fx_rates", "americas", day) == before
    assert audit(warehouse, schema, "fx_rates", "americas") == audit_before


def test_row_count_far_from_the_previous_trading_day_fails_the_load(
    dagbag, pg, warehouse, schema, monkeypatch, capfd, caplog, tmp_path
):
    # The previous trading day (a Monday) had 150 pairs; the demo serves 57 valid ones.
    load_directly(pg, "fx_rates", "americas", "2026-07-06", fx_rows(150), tmp_path)
    result = run(dagbag, monkeypatch, "scrape__fx_rates__americas", "2026-07-07")
    assert result.state == "failed"
    assert task_states(result)["load"] == "failed"
    text = output(capfd, caplog)
    assert (
        "quality check row_count failed for site fx_rates region americas 2026-07-07: "
        "57 rows vs 150 on 2026-07-06 (previous trading day): change 62%, above tolerance 50%"
    ) in text
    assert partition(warehouse, schema, "fx_rates", "americas", "2026-07-07") == []
    assert [a[0] for a in audit(warehouse, schema, "fx_rates", "americas")] == ["2026-07-06"]


def test_passing_checks_show_in_the_load_xcom_and_the_log(
    dagbag, pg, warehouse, schema, monkeypatch, capfd, caplog
):
    first = run(dagbag, monkeypatch, "scrape__funds__oceania", "2026-07-08")
    second = run(dagbag, monkeypatch, "scrape__funds__oceania", "2026-07-09")
    assert (first.state, second.state) == ("success", "success")
    assert len(partition(warehouse, schema, "funds", "oceania", "2026-07-09")) == 28

    scraped = xcom(pg, second, "scrape")
    assert scraped["checks"] == {
        "min_items": "passed", "error_count": "passed", "http_errors": "passed",
        "field_coverage.isin": "passed", "field_coverage.name": "passed",
        "field_coverage.nav": "passed", "field_coverage.nav_date": "passed",
    }  # fmt: skip
    assert xcom(pg, first, "load")["checks"]["row_count"] == "skipped"  # nothing before it
    assert xcom(pg, second, "load")["checks"] == {
        "natural_key": "passed", "row_count": "passed", "range.nav": "passed",
        "range.aum": "passed",
    }  # fmt: skip
    text = output(capfd, caplog)
    assert "Quality check field_coverage passed: field 'isin' present in 29 of 30 items" in text
    assert "Quality check natural_key passed: 0 of 28 rows have a null or blank natural key" in text
    assert (
        "Quality check row_count passed: 28 rows vs 28 on 2026-07-08 (previous trading day): "
        "change 0%, tolerance 50%"
    ) in text


def test_a_blank_natural_key_fails_the_load(pg, warehouse, schema, tmp_path):
    rows = fx_rows(3)
    rows[1]["pair"] = " "  # COPY keeps a blank text key; only NULL violates the primary key
    with pytest.raises(QualityCheckFailed) as err:
        load_directly(pg, "fx_rates", "europe", "2026-07-10", rows, tmp_path)
    assert str(err.value) == (
        "quality check natural_key failed for site fx_rates region europe 2026-07-10: "
        "1 of 3 rows have a null or blank natural key (pair)"
    )
    assert partition(warehouse, schema, "fx_rates", "europe", "2026-07-10") == []
    assert audit(warehouse, schema, "fx_rates", "europe") == []
