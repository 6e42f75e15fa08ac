"""Airflow DAG file: the rollup__<region> DAGs (and rollup__global) whose scope hashes to shard
4 of 5 (offpeak.naming.rollup_shard); a region's rollup waits for every site of the region, so
each region's is a DAG of its own size, kept apart from the others' (docs/scaling.md).
"""

from __future__ import annotations

from offpeak.factory import build_rollup_dags

globals().update(build_rollup_dags(shard=4))
