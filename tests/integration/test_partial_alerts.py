"""Partial days are announced (issue 26): a run that loads without every page posts one
warning to the alerts webhook (alerts.partial: each), or the region rollup's summary posts one
digest for the region and date (alerts.partial: digest). Real crawls of the demo sites under
dag.test(), real loads, and a local HTTP endpoint standing in for Slack's webhook (the outside
world: Slack cannot be reached from tests)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from types import SimpleNamespace

import pytest
import yaml
from test_pipeline import run_dag

from support import REPO
from support.stack import AlertReceiver

pytestmark = pytest.mark.integration
# Sites and regions that no other test of this session reads without a date filter.
DAG = "scrape__equities__americas"


@pytest.fixture
def receiver(monkeypatch):
    webhook = AlertReceiver()
    monkeypatch.setenv(
        "AIRFLOW_CONN_OFFPEAK_ALERTS", json.dumps({"conn_type": "http", "host": webhook.url})
    )
    yield webhook
    webhook.server.shutdown()


def _facts(message: dict) -> dict[str, str]:
    fields = message["blocks"][1]["fields"]
    return dict(f["text"].removeprefix("*").split("*\n", 1) for f in fields)


def test_a_partial_run_posts_exactly_one_warning_naming_its_causes(dagbag, receiver):
    day = date(2026, 6, 10)
    full = run_dag(dagbag, DAG, day)
    assert full.state == "success"
    assert receiver.received == []  # a complete day is not announced

    sample = run_dag(dagbag, DAG, day, {"max_pages": 1})  # 1 page of 5: a partial crawl
    assert sample.state == "success"
    assert len(receiver.received) == 1, receiver.received
    message = receiver.received[0]["json"]
    assert message["text"] == (
        f":large_yellow_circle: {DAG} loaded a partial day for {day}: its crawl did not read "
        "every page, so no row was deleted"
    )
    facts = _facts(message)
    assert (facts["Site"], facts["Region"], facts["Trading date"]) == (
        "equities", "americas", str(day))  # fmt: skip
    assert facts["Rows"].endswith("updated, none deleted (90 held)"), facts["Rows"]
    assert f"/dags/{DAG}/runs/" in facts["Run"] and sample.run_id in facts["Run"]
    assert facts["Coverage"].startswith("<http") and "/plugin/coverage|" in facts["Coverage"]
    causes = message["blocks"][2]["text"]["text"]
    assert "- a sample was asked for (max_pages=1" in causes, causes


def test_the_digest_option_posts_one_message_per_region_and_date(
    dagbag, warehouse, receiver, tmp_path, monkeypatch
):
    from offpeak.rollups.summaries import summarize_region

    config = tmp_path / "config"
    shutil.copytree(REPO / "include/config", config)
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    regions.setdefault("alerts", {})["partial"] = "digest"
    (config / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))

    day = date(2026, 6, 11)
    for dag_id in ("scrape__equities__asia_pacific", "scrape__fx_rates__asia_pacific"):
        assert run_dag(dagbag, dag_id, day, {"max_pages": 1}).state == "success"
    assert receiver.received == []  # digest: the loads post nothing

    run = SimpleNamespace(conf={"trading_date": str(day)}, data_interval_start=None)
    summary = summarize_region(region="asia_pacific", dag_run=run)
    assert summary["sites_partial"] == ["equities", "fx_rates"]
    assert len(receiver.received) == 1, receiver.received
    message = receiver.received[0]["json"]
    assert message["text"] == (
        f":large_yellow_circle: asia_pacific {day}: 2 site(s) loaded a partial day (crawls that "
        "did not read every page; no row was deleted)"
    )
    listed = message["blocks"][2]["text"]["text"]
    pattern = r"```- equities: \d+ rows held, run \S+\n- fx_rates: \d+ rows held, run \S+```"
    assert re.fullmatch(pattern, listed), listed
