"""A generated config of many sites: the shipped site files copied round-robin, each copy in
every shipped region, with its own name, description and connection (a few on a queue of
their own). Used by tests/dags/test_parse_at_scale.py and `make bench` (bench_parse.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from support import REPO

SHIPPED = REPO / "include" / "config"


def make_config(target: Path, sites: int) -> list[str]:
    """A config folder at ``target`` with ``sites`` sites; the scrape DAG ids it gives, sorted."""
    (target / "sites").mkdir(parents=True)
    shutil.copy(SHIPPED / "regions.yaml", target / "regions.yaml")
    regions = sorted(yaml.safe_load((SHIPPED / "regions.yaml").read_text("utf-8"))["regions"])
    bases = sorted((SHIPPED / "sites").glob("*.yaml"))
    dag_ids = []
    for i in range(sites):
        base = bases[i % len(bases)]
        data = yaml.safe_load(base.read_text("utf-8"))
        name = f"{base.stem}_{i:02d}"
        data.update(
            description=f"{data.get('description', '')} (copy {i})",
            base_url_conn_id=f"{data['base_url_conn_id']}_{i:02d}",
            regions=regions,
        )
        if i % 10 == 3:  # a few sites crawl on a queue of their own
            data["queue"] = "crawl_vpn"
        (target / "sites" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        dag_ids += [f"scrape__{name}__{r}" for r in regions]
    return sorted(dag_ids)
