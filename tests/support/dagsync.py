"""The scrape DAGs a test runs: built from a config folder of its own (scrape_dags), or
registered in the metadata DB once before a test starts several `airflow dags test` processes
at once (register_dags; docs/decisions.md, "Concurrent `airflow dags test`")."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from support import REPO

AIRFLOW = Path(sys.executable).parent / "airflow"


def shipped_config_with(folder: Path, site_files: list[Path]) -> Path:
    """``folder/config``: the shipped config plus ``site_files`` among its sites."""
    import shutil

    config = folder / "config"
    shutil.copytree(REPO / "include/config", config)
    for path in site_files:
        shutil.copy(path, config / "sites" / path.name)
    return config


def equities_variants(folder: Path, sites: Mapping[str, Mapping[str, Any]]) -> Path:
    """``folder``: a copy of include/config whose only sites are variants of equities, one per
    name in ``sites``, each the shipped equities.yaml with its top-level keys replaced by the
    given ones (dag.test() parses and syncs every DAG of its scrape DAG file each run, so the
    shipped sites would only slow it)."""
    import shutil

    import yaml

    shutil.copytree(REPO / "include/config", folder)
    equities = yaml.safe_load((folder / "sites/equities.yaml").read_text())
    for shipped in (folder / "sites").glob("*.yaml"):
        shipped.unlink()
    for name, changes in sites.items():
        (folder / "sites" / f"{name}.yaml").write_text(yaml.safe_dump({**equities, **changes}))
    return folder


@contextmanager
def dags_of(config: Path) -> Iterator[Any]:
    """The scrape DAGs built from ``config`` (scrape_dags), with OFFPEAK_CONFIG_DIR set to it
    while they are in use: a module-scoped fixture's body."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFPEAK_CONFIG_DIR", str(config))
        yield scrape_dags()


def register_dags(env: Mapping[str, str]) -> None:
    """`airflow dags reserialize` with the environment the concurrent runs will have (its
    config folder decides which DAGs exist): afterwards they find every row they would
    insert, and only read or update it."""
    done = subprocess.run(
        [str(AIRFLOW), "dags", "reserialize"],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"airflow dags reserialize failed:\n{done.stdout}{done.stderr}"


def scrape_dags(config: Path | None = None) -> Any:
    """The scrape DAG files' DagBag (every shard of dags/scrape/), built from the config folder
    ``config`` (OFFPEAK_CONFIG_DIR while it parses; default: the environment's). An import
    error fails the test, naming it."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        if config is not None:
            mp.setenv("OFFPEAK_CONFIG_DIR", str(config))
        bag = DagBag(dag_folder=str(REPO / "dags" / "scrape"))
    assert not bag.import_errors, bag.import_errors
    return bag
