"""Airflow DAG file: the scrape__<site>__<region> DAGs of the sites in shard 1 of 16.

A site's DAGs are built by the file its name hashes to (offpeak.naming.scrape_shard), so each
parse reads a sixteenth of the site files and builds a sixteenth of the DAGs
(docs/scaling.md).
"""

from __future__ import annotations

from offpeak.factory import build_scrape_dags

globals().update(build_scrape_dags(shard=1))
