"""The DAG parse path: config read once per process (edits still seen), one site's file under a
worker's parsing context, doc_md unchanged, and no heavy imports for one DAG."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from offpeak import factory
from offpeak.config import ConfigError, get_site, load_project, loading
from offpeak.naming import scrape_dag_file
from offpeak.schedule import calendars

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "include" / "config"
CONTEXT = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"  # what Airflow's parsing context sets


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(SHIPPED, target)
    return target


def rewrite_keeping_stat(path: Path, old: str, new: str) -> None:
    """An edit the mtime and size do not show: same length, the old timestamps put back."""
    assert len(old) == len(new)
    stat = path.stat()
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


# --------------------------------------------------------------------------- reading once


def test_the_c_loader_reads_the_shipped_files_as_the_pure_python_one_did():
    project = load_project(SHIPPED)
    for path in sorted((SHIPPED / "sites").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        expected = {**data, "name": path.stem}
        dumped = project.sites[path.stem].model_dump(exclude_unset=True)
        assert {k: dumped[k] for k in expected if k in ("name", "kind", "regions")} == {
            k: expected[k] for k in ("name", "kind", "regions")
        }
    regions = yaml.safe_load((SHIPPED / "regions.yaml").read_text(encoding="utf-8"))["regions"]
    assert {n: r.exchange for n, r in project.regions.items()} == {
        n: r["exchange"] for n, r in regions.items()
    }


def test_an_unchanged_file_is_validated_once_per_process(config_dir):
    first, second = load_project(config_dir), load_project(config_dir)
    assert first.sites["equities"] is second.sites["equities"]
    assert first.regions is second.regions
    # Run time compiles selectors: a parse of its own, remembered as well.
    site, _ = get_site("equities", config_dir)
    assert site is not first.sites["equities"] and get_site("equities", config_dir)[0] is site


def test_an_edit_is_seen_even_when_mtime_and_size_are_unchanged(config_dir):
    path = config_dir / "sites" / "equities.yaml"
    assert load_project(config_dir).sites["equities"].quality.min_items == 10
    rewrite_keeping_stat(path, "min_items: 10", "min_items: 42")
    assert load_project(config_dir).sites["equities"].quality.min_items == 42
    rewrite_keeping_stat(path, "min_items: 42", "min_items: x2")
    project = load_project(config_dir)
    assert "equities" not in project.sites
    assert "quality.min_items" in project.errors["equities.yaml"]
    regions = config_dir / "regions.yaml"
    rewrite_keeping_stat(regions, "exchange: XLON", "exchange: XLSE")
    assert (
        "no trading calendar for exchange 'XLSE'" in load_project(config_dir).errors["regions.yaml"]
    )


def test_a_site_is_checked_again_when_its_region_goes(config_dir):
    assert "oceania" in load_project(config_dir).sites["funds"].regions
    regions = config_dir / "regions.yaml"
    text = regions.read_text(encoding="utf-8")
    oceania = "\n  oceania:" + text.split("\n  oceania:", 1)[1].split("\n  india:", 1)[0]
    regions.write_text(text.replace(oceania, ""), encoding="utf-8")
    project = load_project(config_dir)
    assert "funds" not in project.sites and "fx_rates" not in project.sites
    assert "unknown region(s) ['oceania']" in project.errors["funds.yaml"]
    assert "equities" in project.sites  # not in oceania: unaffected


def test_a_remembered_error_is_reported_again(config_dir):
    (config_dir / "sites" / "rates.yaml").write_text("kind: [\n", encoding="utf-8")
    first, second = load_project(config_dir), load_project(config_dir)
    assert first.errors == second.errors and "not valid YAML" in second.errors["rates.yaml"]
    with pytest.raises(ConfigError, match="not valid YAML"):
        factory.raise_config_errors(second)


# --------------------------------------------------------------------------- one site


def test_only_site_reads_regions_and_that_site(config_dir):
    (config_dir / "sites" / "rates.yaml").write_text("kind: [\n", encoding="utf-8")
    project = load_project(config_dir, only_site="funds")
    assert set(project.sites) == {"funds"} and project.errors == {}
    assert project.sites["funds"] == load_project(config_dir).sites["funds"]
    assert set(project.regions) == set(load_project(config_dir).regions)
    assert load_project(config_dir, only_site="rates").errors.keys() == {"rates.yaml"}
    missing = load_project(config_dir, only_site="nothing")
    assert (missing.sites, missing.errors) == ({}, {})


def test_a_worker_builds_its_dag_from_its_sites_file_alone(config_dir, monkeypatch):
    (config_dir / "sites" / "rates.yaml").write_text("kind: [\n", encoding="utf-8")
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config_dir))
    read: list[str] = []
    load_site = loading.load_site

    def spy(path, *args, **kwargs):
        read.append(path.name)
        return load_site(path, *args, **kwargs)

    monkeypatch.setattr(loading, "load_site", spy)
    monkeypatch.setenv(CONTEXT, "scrape__funds__india")
    assert list(factory.build_scrape_dags()) == ["scrape__funds__india"]
    assert read == ["funds.yaml"]  # the broken rates.yaml is not even read
    monkeypatch.delenv(CONTEXT)
    read.clear()
    assert len(factory.build_scrape_dags()) == 11
    assert read == ["equities.yaml", "funds.yaml", "fx_rates.yaml", "rates.yaml"]


@pytest.mark.parametrize(
    ("dag_id", "builder"),
    [
        ("rollup__europe", factory.build_scrape_dags),
        ("scrape__funds__india", factory.build_rollup_dags),
        ("some_other_dag", factory.build_scrape_dags),
    ],
)
def test_a_worker_reads_no_config_for_another_files_dag(tmp_path, monkeypatch, dag_id, builder):
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(tmp_path / "no-config-here"))
    monkeypatch.setenv(CONTEXT, dag_id)
    assert builder() == {}


def test_a_worker_running_a_rollup_builds_it(monkeypatch):
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(SHIPPED))
    monkeypatch.setenv(CONTEXT, "rollup__europe")
    assert list(factory.build_rollup_dags()) == ["rollup__europe"]


# --------------------------------------------------------------------------- doc_md, calendars


def test_doc_md_shows_the_resolved_config_as_before():
    project = load_project(SHIPPED)
    for site, region in project.pairs():
        doc = factory._doc_md(site, region, project.alerts)
        resolved = yaml.safe_dump(  # what each DAG's doc_md has always embedded
            {"site": site.model_dump(mode="json"), "region": region.model_dump(mode="json")},
            sort_keys=False,
            allow_unicode=True,
        )
        assert doc.endswith(f"Resolved config (from `include/config`):\n\n```yaml\n{resolved}```\n")
        assert doc.startswith(f"### {site.name} in {region.name}\n")


def test_a_site_changed_in_memory_gets_its_own_doc_md():
    project = load_project(SHIPPED)
    site, region = project.pairs()[0]
    moved = site.model_copy(update={"queue": "crawl_vpn"})
    assert "queue: crawl_vpn" in factory._doc_md(moved, region, project.alerts)
    assert "queue: null" in factory._doc_md(site, region, project.alerts)


def test_supported_exchanges_are_holidays_financial_markets():
    import holidays

    markets = frozenset(holidays.list_supported_financial())
    written = calendars.HOLIDAYS_FINANCIAL
    assert written == markets, (
        f"calendars.HOLIDAYS_FINANCIAL is not holidays {holidays.__version__}'s list: add "
        f"{sorted(markets - written)}, drop {sorted(written - markets)}"
    )
    assert calendars.supported_exchanges() == markets | frozenset(calendars.ALIASES)


def test_timetable_validation_names_an_exchange_without_a_calendar():
    from airflow.exceptions import AirflowTimetableInvalid

    from offpeak.schedule.timetable import OffPeakTimetable

    region = load_project(SHIPPED).regions["europe"]
    OffPeakTimetable.for_region(region).validate()
    broken = OffPeakTimetable.for_region(region.model_copy(update={"exchange": "XLSE"}))
    with pytest.raises(AirflowTimetableInvalid, match="no trading calendar for exchange 'XLSE'"):
        broken.validate()


# --------------------------------------------------------------------------- a worker's parse


def test_one_dag_under_the_parsing_context_imports_nothing_it_does_not_use():
    """What a task start parses: the site's scrape DAG file for one dag_id, as
    task_runner.parse does."""
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from airflow.sdk.definitions._internal.dag_parsing_context import (\n"
        "    _airflow_parsing_context_manager)\n"
        "before = set(sys.modules)\n"
        "with _airflow_parsing_context_manager(dag_id='scrape__funds__india', task_id='load'):\n"
        f"    bag = DagBag(dag_folder='dags/{scrape_dag_file('funds')}', safe_mode=False, "
        "load_op_links=False)\n"
        "new = set(sys.modules) - before\n"
        "print(json.dumps({'dags': sorted(bag.dags), 'new': sorted(new)}))\n"
    )
    env = {**os.environ, "OFFPEAK_CONFIG_DIR": str(SHIPPED)}
    env.pop(CONTEXT, None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dags"] == ["scrape__funds__india"]
    unused = {
        "holidays",  # the calendars: the parse only checks codes (calendars.HOLIDAYS_FINANCIAL)
        "offpeak.rollups.sensor",  # ExternalTaskSensor subclass: the rollups' file only
        "scrapy",
        "lxml",
        "psycopg",
    }
    assert unused & set(result["new"]) == set()
