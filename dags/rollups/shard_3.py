"""Airflow DAG file: the rollup__<region> DAGs (and rollup__global) whose scope hashes to shard
3 of 5 (offpeak.naming.rollup_shard); a region's rollup waits for every site of the region, so
each region's is a DAG of its own size, kept apart from the others' (docs/scaling.md).
"""

from __future__ import annotations

# The Airflow modules the factory builds these DAGs with, named here for the dag-processor: its
# manager imports every `airflow.*` module a DAG file imports before it forks the file's parse
# ([dag_processor] parsing_pre_import_modules), so each parse inherits them (~30 ms of CPU a
# file; docs/scaling.md).
import airflow.providers.standard.operators.python
import airflow.providers.standard.sensors.external_task  # noqa: F401 (both bind `airflow`)

from offpeak.factory import build_rollup_dags

globals().update(build_rollup_dags(shard=3))
