"""Airflow DAG file that defines no DAG: it fails to import when a config file is broken.

That puts each broken file's error (file, site, field) in `airflow dags list-import-errors`
and the UI, while the files of dags/scrape/ keep loading every valid site's DAGs.
"""

from __future__ import annotations

from offpeak.factory import raise_config_errors

raise_config_errors()
