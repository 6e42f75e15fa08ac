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


def failure_alert_date(conf: dict) -> str:
    """The "Trading date" a task's failure alert shows for a run given ``conf``."""
    from offpeak.alerts.notifier import FailureNotifier

    ti = SimpleNamespace(
        dag_id="scrape__funds__americas", task_id="scrape", try_number=1, run_id="manual__1",
        log_url="http://airflow/log", xcom_pull=lambda task_ids: None,
    )  # fmt: skip
    ctx = {"ti": ti, **context(conf)}
    payload = FailureNotifier(http_conn_id="offpeak_alerts", region="americas").payload(ctx)
    fields = [f["text"] for f in payload["blocks"][1]["fields"]]
    return next((f.split("\n", 1)[1] for f in fields if f.startswith("*Trading date*")), None)


def test_a_stated_trading_date_is_given_back_as_written():
    assert failure_alert_date({"trading_date": "2026-11-26"}) == "2026-11-26"
    assert failure_alert_date({"trading_date": "soon"}) == "soon"
    assert failure_alert_date({}) is None


def test_a_macro_reads_a_dag_run_alone():
    run = SimpleNamespace(conf={}, data_interval_start=datetime(2026, 11, 20, 5, tzinfo=UTC))
    assert params.trading_date(AMERICAS, run) == date(2026, 11, 20)
    run.conf = {"trading_date": "2026-11-18"}
    assert params.trading_date(AMERICAS, run) == date(2026, 11, 18)


def test_a_deadline_alert_reads_the_run_as_the_rest_api_shows_it(monkeypatch):
    from offpeak.alerts import notifier

    posted = []
    monkeypatch.setattr(notifier, "post", lambda conn_id, payload: posted.append(payload))

    def alert_date(run: dict) -> str | None:
        notifier.deadline_missed({"dag_run": run}, "offpeak_alerts", "americas", "w",
                                 "America/New_York")  # fmt: skip
        fields = [f["text"] for f in posted[-1]["blocks"][1]["fields"]]
        found = [f.split("\n", 1)[1] for f in fields if f.startswith("*Trading date*")]
        return found[0] if found else None

    run = {"conf": {}, "data_interval_start": "2026-11-20T05:00:00Z"}
    assert alert_date(run) == "2026-11-20"
    run["conf"] = {"trading_date": "2026-11-18"}
    assert alert_date(run) == "2026-11-18"
    assert alert_date({}) is None
