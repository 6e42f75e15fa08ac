"""A broken site file is reported (file, site, field) and hides no other site's DAGs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

BROKEN_SITE = """\
kind: html_table
base_url_conn_id: site_equities
start_urls: ["/equities/{region}/{trading_date}/quotes"]
regions: [europe]
natural_key: [symbol]
html_table: {rows: "tr"}
fields:
  symbol: {type: text, css: "td.symbol::text"}
  price: {type: money, css: "td.last::text"}
"""


@pytest.fixture
def broken_config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(REPO / "include/config", config)
    (config / "sites/bonds.yaml").write_text(BROKEN_SITE)
    return config


def json_output(stdout: str):
    """The JSON document the CLI printed after any log lines."""
    return json.loads(stdout[stdout.index("\n[") + 1 if not stdout.startswith("[") else 0 :])


def airflow_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OFFPEAK_CONFIG_DIR": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True
    )


def test_list_import_errors_names_file_site_and_field(airflow_db, broken_config):
    done = airflow_cli(broken_config, "dags", "list-import-errors", "-l", "-o", "json")
    assert done.returncode == 1, done.stderr  # non-zero, so a CI step can gate on it
    errors = json_output(done.stdout)
    assert [Path(e["filepath"]).name for e in errors] == ["config_check.py"]
    message = errors[0]["error"]
    assert str(broken_config / "sites/bonds.yaml") in message
    assert "site 'bonds'" in message
    assert "field `fields.price.type`" in message
    assert "'money'" in message


def test_valid_sites_still_load_beside_a_broken_one(airflow_db, broken_config):
    done = airflow_cli(broken_config, "dags", "list", "-l", "-o", "json")
    assert done.returncode == 0, done.stderr
    dag_ids = {d["dag_id"] for d in json_output(done.stdout)}
    assert len({d for d in dag_ids if d.startswith("scrape__")}) == 11
    assert "scrape__equities__europe" in dag_ids and "rollup__global" in dag_ids
    assert not any("bonds" in d for d in dag_ids)
