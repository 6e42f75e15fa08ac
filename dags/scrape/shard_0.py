"""Airflow DAG file: the scrape__<site>__<region> DAGs of the sites in shard 0 of 16.

A site's DAGs are built by the file its name hashes to (offpeak.naming.scrape_shard), so each
parse reads a sixteenth of the site files and builds a sixteenth of the DAGs
(docs/scaling.md).
"""

from __future__ import annotations

# The Airflow modules the factory builds these DAGs with, named here for the dag-processor: its
# manager imports every `airflow.*` module a DAG file imports before it forks the file's parse
# ([dag_processor] parsing_pre_import_modules), so each parse inherits them (~30 ms of CPU a
# file; docs/scaling.md).
import airflow.providers.standard.operators.python
import airflow.providers.standard.sensors.external_task  # noqa: F401 (both bind `airflow`)

from offpeak.factory import build_scrape_dags

globals().update(build_scrape_dags(shard=0))
