"""The DAG files: SCRAPE_SHARDS files in dags/scrape/, each building the DAGs of the sites whose
name hashes to it, ROLLUP_SHARDS in dags/rollups/ by scope; together every DAG once."""

from __future__ import annotations

import ast
import shutil

import pytest
import yaml

from offpeak import factory
from offpeak.config import load_project
from offpeak.naming import (
    ROLLUP_SHARDS,
    SCRAPE_SHARDS,
    rollup_dag_file,
    rollup_shard,
    scrape_dag_file,
    scrape_shard,
)
from support import REPO
from support.dagsync import scrape_dags

SHIPPED = REPO / "include" / "config"


@pytest.mark.parametrize(
    ("folder", "builder", "count"),
    [
        ("scrape", "build_scrape_dags", SCRAPE_SHARDS),
        ("rollups", "build_rollup_dags", ROLLUP_SHARDS),
    ],
)
def test_there_is_one_dag_file_per_shard_and_each_builds_its_own_shard(folder, builder, count):
    files = sorted((REPO / "dags" / folder).glob("*.py"))
    assert [f.name for f in files] == sorted(f"shard_{n}.py" for n in range(count))
    for file in files:
        calls = [
            node
            for node in ast.walk(ast.parse(file.read_text("utf-8")))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == builder
        ]
        (call,) = calls
        (shard,) = [k.value.value for k in call.keywords if k.arg == "shard"]
        assert file.name == f"shard_{shard}.py"


@pytest.mark.parametrize("folder", ["scrape", "rollups"])
def test_each_dag_file_names_the_airflow_modules_its_dags_are_built_with(folder):
    """The dag-processor's manager imports the `airflow.*` modules a DAG file imports before it
    forks the file's parse, so the parse inherits them: every provider module the factory
    imports must be named in each file, as Airflow's own scan of the file finds them."""
    from airflow.utils.file import iter_airflow_imports

    factory = ast.parse((REPO / "plugins" / "offpeak" / "factory.py").read_text("utf-8"))
    used = {
        node.module
        for node in ast.walk(factory)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow.providers")
    }
    assert "airflow.providers.standard.operators.python" in used  # PythonOperator
    for file in sorted((REPO / "dags" / folder).glob("*.py")):
        assert used <= set(iter_airflow_imports(str(file))), file.name


def test_the_shard_of_a_site_is_the_same_in_every_process_and_release():
    # CRC-32 of the name: these values are part of where deployed DAGs live.
    assert {s: scrape_shard(s) for s in ("equities", "fx_rates", "funds")} == {
        "equities": 7,
        "fx_rates": 10,
        "funds": 1,
    }
    assert scrape_dag_file("funds") == "scrape/shard_1.py"


def test_the_shards_build_every_dag_once_and_read_only_their_own_site_files(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(SHIPPED, config)
    base = yaml.safe_load((config / "sites" / "equities.yaml").read_text("utf-8"))
    for i in range(40):
        (config / "sites" / f"copy_{i:02d}.yaml").write_text(yaml.safe_dump(base), "utf-8")
    (config / "sites" / "broken.yaml").write_text("kind: [", "utf-8")
    project = load_project(config)
    every = {dag_id for dag_id in factory.dag_ids(project) if dag_id.startswith("scrape__")}
    built: dict[str, int] = {}
    for shard in range(SCRAPE_SHARDS):
        read = load_project(config, keep=lambda site, n=shard: scrape_shard(site) == n)
        assert all(scrape_shard(site) == shard for site in read.sites)
        assert set(read.errors) <= {"broken.yaml"}
        for dag_id in factory.build_scrape_dags(read, shard=shard):
            assert dag_id not in built, f"{dag_id} built by shards {built[dag_id]} and {shard}"
            built[dag_id] = shard
    assert set(built) == every
    assert len(every) == 11 + 40 * len(base["regions"])
    assert len(set(built.values())) > SCRAPE_SHARDS // 2  # the sites spread over the files


def test_a_broken_site_file_hides_no_dag_of_its_shard_or_any_other(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(SHIPPED, config)
    # A broken file whose name falls in the equities shard.
    name = next(f"broken_{i}" for i in range(100) if scrape_shard(f"broken_{i}") == 7)
    (config / "sites" / f"{name}.yaml").write_text("kind: html_table\nregions: [nowhere]\n")
    bag = scrape_dags(config)
    assert sorted(bag.dags) == sorted(
        d for d in factory.dag_ids(load_project(SHIPPED)) if d.startswith("scrape__")
    )
    assert not bag.import_errors


@pytest.mark.parametrize("site", ["equities", "fx_rates", "funds"])
def test_each_sites_dags_come_from_the_file_its_name_hashes_to(site):
    bag = scrape_dags(SHIPPED)
    files = {dag.fileloc for dag_id, dag in bag.dags.items() if f"__{site}__" in dag_id}
    assert files == {str(REPO / "dags" / scrape_dag_file(site))}


def test_the_rollup_files_build_every_rollup_once_each_in_the_file_its_scope_hashes_to():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "rollups"))
    assert not bag.import_errors
    expected = [d for d in factory.dag_ids(load_project(SHIPPED)) if d.startswith("rollup__")]
    assert sorted(bag.dags) == expected
    for dag_id, dag in bag.dags.items():
        scope = dag_id.removeprefix("rollup__")
        assert dag.fileloc == str(REPO / "dags" / rollup_dag_file(scope))
    assert {s: rollup_shard(s) for s in ("americas", "europe", "global")} == {
        "americas": 1,
        "europe": 4,
        "global": 2,
    }
    # Shard 0 has no region of the shipped config: it builds nothing.
    empty = factory.build_rollup_dags(shard=0)
    assert empty == {}
