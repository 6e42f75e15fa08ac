"""DAG integrity: every factory DAG imports and carries what operators rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from offpeak.config import load_project
from offpeak.naming import DB_CLEAN_DAG_ID, parse_dag_id, rollup_dag_id, scrape_dag_id

PROJECT = load_project()
EXPECTED = sorted(scrape_dag_id(s.name, r.name) for s, r in PROJECT.pairs())
ROLLUPS = sorted([*(rollup_dag_id(r.name) for r in PROJECT.rolled_up_regions()), "rollup__global"])
MAINTENANCE = [DB_CLEAN_DAG_ID]  # dags/maintenance.py: not built from the config


def test_shipped_config_gives_one_dag_per_site_and_region(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == sorted(EXPECTED + ROLLUPS + MAINTENANCE)
    assert len(EXPECTED) == 11 and len(ROLLUPS) == 6
    assert len(PROJECT.sites) >= 3 and len(PROJECT.regions) >= 4


@pytest.mark.parametrize("dag_id", EXPECTED)
def test_dag_settings(dagbag, dag_id):
    parsed = parse_dag_id(dag_id)
    site_name, region_name = parsed.site, parsed.scope
    site, region = PROJECT.sites[site_name], PROJECT.regions[region_name]
    dag = dagbag.get_dag(dag_id)
    assert set(dag.tags) >= {f"site:{site_name}", f"region:{region_name}"}
    assert [t.task_id for t in dag.topological_sort()] == [
        "scrape",
        "transform",
        "load",
        "mark_rollup",
    ]
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
        if task.task_id == "mark_rollup":
            continue
        assert task.retries == site.dag.retries >= 1
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay == timedelta(seconds=site.dag.max_retry_delay_seconds)


def test_a_sites_queue_routes_its_crawl_and_only_its_crawl():
    """`queue:` in a site's YAML sends its scrape task to that Celery queue (a worker started
    with `--queues crawl_vpn` serves it); transform and load stay on the default queue."""
    from airflow.configuration import conf

    from offpeak.factory import build_scrape_dag

    site = PROJECT.sites["equities"].model_copy(update={"queue": "crawl_vpn"})
    dag = build_scrape_dag(site, PROJECT.regions["europe"])
    default = conf.get("operators", "default_queue")
    assert {t.task_id: t.queue for t in dag.tasks} == {
        "scrape": "crawl_vpn", "transform": default, "load": default, "mark_rollup": default
    }  # fmt: skip
    assert "Celery queue `crawl_vpn`" in dag.doc_md
    shipped = PROJECT.sites["equities"]
    assert (
        shipped.queue is None
        and "Celery queue" not in build_scrape_dag(shipped, PROJECT.regions["europe"]).doc_md
    )


def test_every_dag_serializes_with_the_registered_timetable(dagbag):
    """What the dag-processor stores is what the scheduler and the UI rebuild."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id in EXPECTED + ROLLUPS:
        dag = dagbag.get_dag(dag_id)
        back = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        assert type(back.timetable) is type(dag.timetable)
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
    assert result == {"dags": len(EXPECTED) + len(ROLLUPS) + len(MAINTENANCE), "heavy": []}


def test_the_maintenance_dag_runs_daily_and_carries_what_operators_rely_on(dagbag):
    """maintenance__db_clean (docs/metadata-retention.md): daily, one run at a time, no
    catch-up of missed days (each run purges everything before its own cut-off)."""
    dag = dagbag.get_dag(DB_CLEAN_DAG_ID)
    assert [t.task_id for t in dag.tasks] == ["db_clean"]
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("15 12 * * *", "UTC")
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.start_date.tzinfo is not None
    assert "maintenance" in dag.tags
    assert "OFFPEAK_METADATA_RETENTION_DAYS" in dag.doc_md
    [task] = dag.tasks
    assert task.owner == "platform" and task.retries == 1


def test_worker_parse_builds_only_its_dag(monkeypatch):
    """With a parsing context (as in a worker) the factory builds just the DAG it runs."""
    from offpeak.factory import build_scrape_dags

    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "scrape__funds__india")
    assert list(build_scrape_dags(PROJECT)) == ["scrape__funds__india"]


def test_plugins_manager_imports_only_the_plugin_module():
    """Airflow imports every .py under plugins/ as a top-level module unless .airflowignore'd."""
    from airflow._shared.module_loading import find_path_from_directory

    from support import REPO

    files = find_path_from_directory(str(REPO / "plugins"), ".airflowignore", "glob")
    assert sorted(Path(f).name for f in files if f.endswith(".py")) == ["offpeak_plugin.py"]


@pytest.mark.parametrize("region", [r.name for r in PROJECT.rolled_up_regions()])
def test_region_rollup_waits_for_every_site_of_its_region(dagbag, region):
    from offpeak.schedule.tradingtime import RegionClock

    dag = dagbag.get_dag(rollup_dag_id(region))
    sites = [s.name for s in PROJECT.sites_of(region)]
    sensors = [t for t in dag.tasks if t.task_id.startswith("wait_for_sites.")]
    assert sorted(t.external_dag_id for t in sensors) == [scrape_dag_id(s, region) for s in sites]
    opens, closes = RegionClock.of(PROJECT.regions[region]).window_of_day(date(2027, 1, 6))
    for sensor in sensors:
        assert sensor.external_task_ids == ["load"]
        assert sensor.deferrable and sensor.failed_states == ["failed", "upstream_failed"]
        assert 0 < sensor.timeout <= (closes - opens).total_seconds()  # ends within the window
        assert sensor.soft_fail is PROJECT.rollups.soft_fail
    assert (
        dag.fail_fast and dag.timetable == dagbag.get_dag(scrape_dag_id(sites[0], region)).timetable
    )
    assert {f"region:{region}", "rollup"} <= set(dag.tags)


def test_global_rollup_waits_for_every_region_rollup(dagbag):
    dag = dagbag.get_dag("rollup__global")
    sensors = {t.task_id: t for t in dag.tasks if t.task_id.startswith("wait_for_regions.")}
    regions = [r.name for r in PROJECT.rolled_up_regions()]
    assert sorted(t.external_dag_id for t in sensors.values()) == [
        rollup_dag_id(r) for r in regions
    ]
    assert all(t.external_task_ids == ["summarize"] and t.deferrable for t in sensors.values())
    assert dag.timetable.summary.startswith("Trading days of XASX, XBOM, XLON, XNYS, XTKS")


def test_markers_point_at_tasks_that_exist(dagbag):
    """A recursive clear follows ExternalTaskMarkers: each must name a real DAG and task."""
    markers = [
        t for d in dagbag.dags.values() for t in d.tasks if type(t).__name__ == "ExternalTaskMarker"
    ]
    assert len(markers) == len(EXPECTED) + len(ROLLUPS) - 1  # every site DAG and region rollup
    for marker in markers:
        target = dagbag.get_dag(marker.external_dag_id)
        assert target is not None and marker.external_task_id in target.task_dict, marker


def test_a_new_site_and_region_in_yaml_extend_the_rollups(tmp_path):
    """No code change: a region with a site gets its rollup, and the global one waits for it."""
    import shutil

    import yaml

    from offpeak.config import load_project
    from offpeak.factory import build_rollup_dags

    config = tmp_path / "config"
    shutil.copytree(PROJECT.config_dir, config)
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    regions["regions"]["latam"] = {
        "timezone": "America/Sao_Paulo", "exchange": "BVMF",
        "off_peak": {"start": "18:30", "end": "08:00"},
    }  # fmt: skip
    (config / "regions.yaml").write_text(yaml.safe_dump(regions))
    site = yaml.safe_load((config / "sites/fx_rates.yaml").read_text())
    site["regions"] = ["latam"]
    (config / "sites/fx_bonds.yaml").write_text(yaml.safe_dump(site))
    project = load_project(config)
    assert project.errors == {}

    dags = build_rollup_dags(project)
    latam = dags["rollup__latam"]
    assert [t.external_dag_id for t in latam.tasks if t.task_id.startswith("wait_for")] == [
        "scrape__fx_bonds__latam"
    ]
    europe = [t.task_id for t in dags["rollup__europe"].tasks]
    assert "wait_for_sites.fx_rates" in europe and "wait_for_sites.fx_bonds" not in europe
    assert "wait_for_regions.latam" in dags["rollup__global"].task_dict


@pytest.mark.parametrize(
    ("dag_id", "region_midnight"),
    [
        ("scrape__funds__europe", "2026-11-03T00:00:00+00:00"),  # London is on GMT in November
        ("scrape__funds__india", "2026-11-02T18:30:00+00:00"),  # IST midnight
    ],
)
def test_clearing_a_site_run_follows_the_markers_to_the_rollups(dag_id, region_midnight):
    """Airflow 3.3 ignores ExternalTaskMarkers when clearing: offpeak.clearing follows them."""
    from offpeak.clearing import Clear, plan

    region = parse_dag_id(dag_id).scope
    steps = plan(dag_id, "load", date(2026, 11, 3), PROJECT)
    assert steps == [
        Clear(dag_id, "load", region_midnight),
        Clear(f"rollup__{region}", "wait_for_sites.funds", region_midnight),
        Clear("rollup__global", f"wait_for_regions.{region}", "2026-11-03T00:00:00+00:00"),
    ]
    assert steps[1].command()[:6] == [
        "tasks", "clear", f"rollup__{region}", "--task-regex", "wait_for_sites.funds",
        "--downstream",
    ]  # fmt: skip
