"""Airflow DAG file: rollup__<region> per region with sites, and rollup__global."""

from __future__ import annotations

from offpeak.factory import build_rollup_dags

globals().update(build_rollup_dags())
