"""Airflow DAG file: one scrape__<site>__<region> DAG per site and region in include/config."""

from __future__ import annotations

from offpeak.factory import build_scrape_dags

globals().update(build_scrape_dags())
