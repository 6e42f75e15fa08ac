"""Unit tests for plugins/offpeak/settings.py: each OFFPEAK_* setting and its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from offpeak import settings

REPO = Path(__file__).resolve().parents[2]
NAMES = [
    "OFFPEAK_CONFIG_DIR", "OFFPEAK_DATA_ROOT", "OFFPEAK_WAREHOUSE_CONN_ID",
    "OFFPEAK_WAREHOUSE_SCHEMA", "OFFPEAK_DEADLINE_ALERTS", "OFFPEAK_IGNORE_WINDOWS",
    "OFFPEAK_PROGRESS_INTERVAL", "OFFPEAK_METADATA_RETENTION_DAYS", "OFFPEAK_METADATA_CONN_ID",
]  # fmt: skip


@pytest.fixture
def unset(monkeypatch, tmp_path):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    return tmp_path


def test_defaults(unset):
    assert settings.config_dir() == REPO / "include" / "config"
    assert settings.data_root() == (unset / "airflow" / "offpeak-data").as_uri()
    assert settings.warehouse_conn_id() == "warehouse"
    assert settings.warehouse_schema() == "scraped"
    assert settings.deadline_alerts() is True
    assert settings.ignore_windows() is False
    assert settings.progress_interval() == 30.0
    assert settings.metadata_retention_days() == 90
    assert settings.metadata_conn_id() == "airflow_metadata"


def test_each_setting_is_read_when_asked(unset, monkeypatch):
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", "/etc/offpeak")
    monkeypatch.setenv("OFFPEAK_DATA_ROOT", "s3://aws_default@bucket/offpeak")
    monkeypatch.setenv("OFFPEAK_WAREHOUSE_CONN_ID", "dwh")
    monkeypatch.setenv("OFFPEAK_WAREHOUSE_SCHEMA", "test_schema_1")
    monkeypatch.setenv("OFFPEAK_DEADLINE_ALERTS", "false")
    monkeypatch.setenv("OFFPEAK_IGNORE_WINDOWS", "true")
    monkeypatch.setenv("OFFPEAK_PROGRESS_INTERVAL", "0")
    monkeypatch.setenv("OFFPEAK_METADATA_RETENTION_DAYS", "400")
    monkeypatch.setenv("OFFPEAK_METADATA_CONN_ID", "metadb")
    assert settings.config_dir() == Path("/etc/offpeak")
    assert settings.data_root() == "s3://aws_default@bucket/offpeak"
    assert settings.warehouse_conn_id() == "dwh"
    assert settings.warehouse_schema() == "test_schema_1"
    assert settings.deadline_alerts() is False
    assert settings.ignore_windows() is True
    assert settings.progress_interval() == 0.0
    assert settings.metadata_retention_days() == 400
    assert settings.metadata_conn_id() == "metadb"


@pytest.mark.parametrize(
    ("value", "alerts", "ignore"),
    [("1", True, True), ("YES", True, True), ("No", False, False), ("0", False, False),
     ("", True, False), ("maybe", True, False)],
)  # fmt: skip
def test_flags_keep_their_defaults_for_anything_but_yes_or_no(monkeypatch, value, alerts, ignore):
    monkeypatch.setenv("OFFPEAK_DEADLINE_ALERTS", value)
    monkeypatch.setenv("OFFPEAK_IGNORE_WINDOWS", value)
    assert settings.deadline_alerts() is alerts
    assert settings.ignore_windows() is ignore


@pytest.mark.parametrize("value", ["ninety", "90.5", "-1", "0", "34"])
def test_a_retention_that_is_no_whole_number_of_enough_days_names_the_setting(monkeypatch, value):
    """Fewer than 35 days would purge runs the Coverage page's default 20 trading dates show."""
    monkeypatch.setenv("OFFPEAK_METADATA_RETENTION_DAYS", value)
    with pytest.raises(ValueError) as err:
        settings.metadata_retention_days()
    assert str(err.value).startswith(
        f"OFFPEAK_METADATA_RETENTION_DAYS={value!r} is not a whole number of days of at least 35"
    )
    assert "unset it for the default 90" in str(err.value)
