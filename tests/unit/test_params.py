"""Unit tests for plugins/offpeak/params.py: a run's conf, flags and trading date, read once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from offpeak import params
from offpeak.config import load_project

AMERICAS = load_project().regions["americas"]


def context(conf=None, start=None, **extra) -> dict:
    return {"dag_run": SimpleNamespace(conf=conf), "data_interval_start": start, **extra}


def test_params_win_over_the_raw_conf():
    ctx = context({"max_pages": 3, "dry_run": True}, params={"max_pages": 5, "dry_run": None})
    assert params.run_param(ctx, "max_pages") == 5
    assert params.run_param(ctx, "dry_run") is True  # a null param falls back to the conf
    assert params.run_param(ctx, "start_urls", []) == []
    assert params.run_param({}, "max_pages") is None


def test_a_conf_flag_must_be_a_boolean():
    assert params.conf_flag(context({"ignore_breaker": True}), "ignore_breaker") is True
    assert params.conf_flag(context(None), "ignore_breaker") is False
    with pytest.raises(ValueError, match=r"dag_run.conf.ignore_breaker must be true or false"):
        params.conf_flag(context({"ignore_breaker": 1}), "ignore_breaker")


def test_a_stated_trading_date_is_given_back_as_written():
    assert params.stated_trading_date(context({"trading_date": "2026-11-26"})) == "2026-11-26"
    assert params.stated_trading_date(context({"trading_date": "soon"})) == "soon"
    assert params.stated_trading_date(context({})) is None


def test_a_macro_reads_a_dag_run_alone():
    run = SimpleNamespace(conf={}, data_interval_start=datetime(2026, 11, 20, 5, tzinfo=UTC))
    assert params.run_trading_date(AMERICAS, run) == date(2026, 11, 20)
    run.conf = {"trading_date": "2026-11-18"}
    assert params.run_trading_date(AMERICAS, run) == date(2026, 11, 18)


def test_a_deadline_alert_reads_the_run_as_the_rest_api_shows_it():
    run = {"conf": {}, "data_interval_start": "2026-11-20T05:00:00Z"}
    assert params.reported_run_trading_date(run, "America/New_York") == "2026-11-20"
    run["conf"] = {"trading_date": "2026-11-18"}
    assert params.reported_run_trading_date(run, "America/New_York") == "2026-11-18"
    assert params.reported_run_trading_date({}, "America/New_York") is None
