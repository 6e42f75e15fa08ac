"""A new site as YAML only, the way a user adds one: a newspaper's "most active stocks" board
(tests/fixtures/boards: `Name (SYM)` cells, a heading row of td cells, a totals footer, a
spacer row, signs shown only as a class, dates like `May 31, 2013`, times like `16:00 ET`).
It is previewed with `python -m offpeak.preview` (exact typed rows, no rejects), then loaded
through dag.test() (exact rows in the warehouse, zero rejects).

The board is served from the fixture folder by the session's nginx on 127.0.0.1 (gzipped,
chunked, as a newspaper's server sends it): a stand-in for the newspaper's site, which tests
cannot reach."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from test_pipeline import run_dag

from support import REPO
from support.dagsync import scrape_dags
from support.queries import load_audit

pytestmark = pytest.mark.integration

BOARD = REPO / "tests/fixtures/boards"
DAY = date(2026, 8, 4)
DAG_ID = "scrape__mostactive__americas"

# What the first page holds, as the preview prints it (typed, in the clean file's form).
PAGE_ONE = [
    ["AAPL", "Apple Inc.", "442.14", "1.20", "0.27", "19231000", "1980-12-12",
     "2026-08-04T16:00:00-04:00", "Technology", "XNYS"],
    ["BRK.B", "Berkshire Hathaway Inc. (Class B)", "108.60", "-0.85", "-0.78", "4512300",
     "2013-05-31", "2026-08-04T16:00:00-04:00", "Financials", "XNYS"],
    ["MSFT", "Microsoft Corp.", "34.90", "-0.37", "-1.05", "36712150", "1986-03-13",
     "2026-08-04T15:59:00-04:00", "Technology", "XNYS"],
]  # fmt: skip
PAGE_TWO = [
    ["BAC", "Bank of America Corp.", "13.66", "-0.12", "-0.87", "102004000", "2013-05-31",
     "2026-08-04T16:00:00-04:00", "unclassified", "XNYS"],
    ["F", "Ford Motor Co.", "15.68", "0.03", "0.19", "38220900", None,
     "2026-08-04T16:01:00-04:00", "Consumer", "XNYS"],
]  # fmt: skip


@pytest.fixture(scope="module")
def board_url(nginx) -> str:
    """The board's folder as nginx serves it (tests/fixtures at /fixtures/)."""
    return f"{nginx.url}/fixtures/boards"


@pytest.fixture
def config(tmp_path: Path, monkeypatch, nginx) -> Path:
    """The shipped config plus the board's YAML, as a user adds it (its start URL under
    nginx's /fixtures/boards/, where the paper has it at its root); its connection from the
    environment, as a deployment gives it."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "include/config", config)
    text = (BOARD / "mostactive.yaml").read_text()
    moved = text.replace('"/mostactive.html?', '"/fixtures/boards/mostactive.html?')
    assert moved != text
    (config / "sites/mostactive.yaml").write_text(moved)
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))
    monkeypatch.setenv("AIRFLOW_CONN_SITE_MOSTACTIVE", nginx.url)
    return config


def preview(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    return subprocess.run(
        [sys.executable, "-m", "offpeak.preview", str(config / "sites/mostactive.yaml"), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def table_rows(output: str) -> list[list[str]]:
    """The cells of the preview's rows table (columns split on runs of 2+ spaces)."""
    import re

    lines = output.split("\nRows (", 1)[1].split("\n\n", 1)[0].splitlines()[3:]
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


def test_preview_prints_the_typed_rows_of_the_first_page_and_no_rejects(config, board_url):
    done = preview(config, "--region", "americas", "--date", DAY.isoformat())
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert table_rows(out) == PAGE_ONE
    assert "Rejects (0):" in out
    # The heading row, the spacer and the totals footer are not data, and not rejects.
    assert "Rows skipped as not data (header, footer, spacer): 3" in out
    assert f"next page: {board_url}/mostactive-2.html" in out
    assert "1 page(s) fetched" in out
    assert "Verdict: the checks pass; a run would load 3 row(s)." in out


def test_preview_exits_non_zero_when_a_run_would_fail_its_checks(config):
    site_file = config / "sites/mostactive.yaml"
    data = yaml.safe_load(site_file.read_text())
    data["quality"]["min_items"] = 10
    site_file.write_text(yaml.safe_dump(data, sort_keys=False))
    done = preview(config, "--region", "americas", "--date", DAY.isoformat())
    assert done.returncode == 1
    assert "failed  min_items: scraped 3 items, fewer than min 10" in done.stdout
    assert "Verdict: a run would FAIL its quality checks (min_items)." in done.stdout


def test_preview_names_the_file_and_field_of_a_config_error(config):
    site_file = config / "sites/mostactive.yaml"
    data = yaml.safe_load(site_file.read_text())
    data["fields"]["symbol"]["re"] = r"\((unclosed"
    site_file.write_text(yaml.safe_dump(data, sort_keys=False))
    done = preview(config, "--region", "americas", "--date", DAY.isoformat())
    assert done.returncode == 2
    assert str(site_file) in done.stderr
    assert "fields.symbol.re" in done.stderr and "invalid regular expression" in done.stderr


def test_the_board_loads_through_dag_test_with_exact_rows_and_no_rejects(
    config, airflow_db, warehouse
):
    bag = scrape_dags()
    assert DAG_ID in bag.dags
    run = run_dag(bag, DAG_ID, DAY)
    assert run.state == "success"
    rows = warehouse.execute(
        "SELECT symbol, name, last, change, change_pct, volume, listed_on, quoted_at, sector, "
        "exchange FROM scraped.mostactive WHERE region = 'americas' AND trading_date = %s "
        'ORDER BY symbol COLLATE "C"',
        (DAY,),
    ).fetchall()
    expected = sorted(PAGE_ONE + PAGE_TWO)
    assert [_text(row) for row in rows] == expected
    (audit,) = load_audit(warehouse, "mostactive", "americas", DAY)
    assert (audit["rows_in_file"], audit["rows_rejected"], audit["rows_inserted"]) == (5, 0, 5)
    assert audit["complete"] is True


def _text(row: tuple) -> list[str | None]:
    """A warehouse row in the preview's text form (timestamps in New York time)."""
    from zoneinfo import ZoneInfo

    out: list[str | None] = []
    for value in row:
        if value is None:
            out.append(None)
        elif hasattr(value, "tzinfo") and hasattr(value, "hour"):
            out.append(value.astimezone(ZoneInfo("America/New_York")).isoformat())
        elif isinstance(value, Decimal | date | int):
            out.append(str(value) if not isinstance(value, date) else value.isoformat())
        else:
            out.append(value)
    return out


def test_preview_reads_the_connection_as_the_operator_does(config, board_url, monkeypatch):
    """The preview crawls through the operator's own path (offpeak.crawl.runner), the site's
    connection included: Airflow's JSON form works as it does in a task."""
    from urllib.parse import urlsplit

    where = urlsplit(board_url)
    conn = {"conn_type": "http", "host": where.hostname, "port": where.port}
    monkeypatch.setenv("AIRFLOW_CONN_SITE_MOSTACTIVE", json.dumps(conn))
    done = preview(config, "--region", "americas", "--date", DAY.isoformat())
    assert done.returncode == 0, done.stdout + done.stderr
    assert table_rows(done.stdout) == PAGE_ONE


def test_preview_without_a_connection_names_the_variable_to_set(config, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SITE_MOSTACTIVE")
    done = preview(config, "--region", "americas", "--date", DAY.isoformat())
    assert done.returncode == 2
    assert "no base URL: pass --base-url, or export AIRFLOW_CONN_SITE_MOSTACTIVE" in done.stderr
