"""Shared test helpers, one copy each: the lazy session services (services.py), the Airflow
stack of the stack tier (stack.py), its signed-in browser page (browser.py) and the
warehouse and backfill queries tests assert on (queries.py)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
