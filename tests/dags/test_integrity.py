"""DAG integrity: every factory DAG imports and carries what operators rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from offpeak.config import load_project
from offpeak.factory import dag_id_for

PROJECT = load_project()
EXPECTED = sorted(dag_id_for(s.name, r.name) for s, r in PROJECT.pairs())


def test_shipped_config_gives_one_dag_per_site_and_region(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == EXPECTED
    assert len(EXPECTED) == 11
    assert len(PROJECT.sites) >= 3 and len(PROJECT.regions) >= 4


@pytest.mark.parametrize("dag_id", EXPECTED)
def test_dag_settings(dagbag, dag_id):
    _, site_name, region_name = dag_id.split("__")
    site, region = PROJECT.sites[site_name], PROJECT.regions[region_name]
    dag = dagbag.get_dag(dag_id)
    assert set(dag.tags) >= {f"site:{site_name}", f"region:{region_name}"}
    assert [t.task_id for t in dag.topological_sort()] == ["scrape", "transform", "load"]
    assert dag.start_date.tzinfo is not None
    assert dag.timetable.summary == (
        f"{region.exchange} trading days, off-peak {region.off_peak} {region.timezone}"
    )
    expected_days = site.dag.catchup_days if site.dag.catchup else None
    assert (dag.timetable.exchange, dag.timetable.catchup_days) == (region.exchange, expected_days)
    assert dag.catchup is site.dag.catchup
    assert dag.max_active_runs == site.dag.max_active_runs
    assert region.timezone in dag.doc_md and site.kind in dag.doc_md
    for task in dag.tasks:
        assert task.owner == site.dag.owner
        assert task.retries == site.dag.retries >= 1
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay == timedelta(seconds=site.dag.max_retry_delay_seconds)


def test_every_dag_serializes_with_the_registered_timetable(dagbag):
    """What the dag-processor stores is what the scheduler and the UI rebuild."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id in EXPECTED:
        dag = dagbag.get_dag(dag_id)
        back = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        assert type(back.timetable).__name__ == "OffPeakTimetable"
        assert back.timetable.serialize() == dag.timetable.serialize()
        assert back.timetable.description == dag.timetable.description


def test_parsing_imports_no_heavy_libraries():
    """DAG files are parsed all the time: scrapy, psycopg and lxml must stay out.

    (twisted is not checked: Airflow's own DagBag import already loads it.)"""
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder='dags')\n"
        "heavy = sorted(m for m in ('scrapy', 'psycopg', 'lxml') if m in sys.modules)\n"
        "print(json.dumps({'dags': len(bag.dags), 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"dags": len(EXPECTED), "heavy": []}


def test_worker_parse_builds_only_its_dag(monkeypatch):
    """With a parsing context (as in a worker) the factory builds just the DAG it runs."""
    from offpeak.factory import build_scrape_dags

    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "scrape__funds__india")
    assert list(build_scrape_dags(PROJECT)) == ["scrape__funds__india"]


def test_plugins_manager_imports_only_the_plugin_module():
    """Airflow imports every .py under plugins/ as a top-level module unless .airflowignore'd."""
    from airflow._shared.module_loading import find_path_from_directory

    from offpeak.devenv import REPO

    files = find_path_from_directory(str(REPO / "plugins"), ".airflowignore", "glob")
    assert sorted(Path(f).name for f in files if f.endswith(".py")) == ["offpeak_plugin.py"]
