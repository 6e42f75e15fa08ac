"""The partial-day warning's words: causes, the first dead letters and the links, posted to a
local HTTP endpoint standing in for Slack's webhook (Slack cannot be reached from tests)."""

from __future__ import annotations

import json

from offpeak.alerts.notifier import partial_day
from support.stack import AlertReceiver


def test_the_warning_lists_each_cause_and_the_first_dead_letters(monkeypatch):
    webhook = AlertReceiver()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_OFFPEAK_ALERTS", json.dumps({"conn_type": "http", "host": webhook.url})
        )
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")
        scraped = {
            "site": "funds", "region": "india", "trading_date": "2026-11-12",
            "dead_letters": 7,
            "partial_reasons": [
                "5 page(s) lost after retries", "2 answer(s) over download_maxsize"],
            "first_dead_letters": [
                {"url": "http://demo/funds/india/?page=3", "reason": "connection reset"},
                {"url": "http://demo/funds/india/?page=4", "reason": "HTTP 503 after 3 retries"},
            ],
        }  # fmt: skip
        loaded = {"rows_inserted": 3, "rows_updated": 20, "partition_rows": 28}
        run_id = "scheduled__2026-11-12__x"
        assert partial_day("offpeak_alerts", dag_id="scrape__funds__india", run_id=run_id,
                           scraped=scraped, loaded=loaded)  # fmt: skip
    finally:
        webhook.server.shutdown()
    (message,) = [m["json"] for m in webhook.received]
    fields = [f["text"] for f in message["blocks"][1]["fields"]]
    assert "*Rows*\n3 inserted, 20 updated, none deleted (28 held)" in fields
    assert "*Dead letters*\n7" in fields
    assert (
        "*Run*\n<https://airflow.example/dags/scrape__funds__india/runs/scheduled__2026-11-12__x"
        "|scheduled__2026-11-12__x>"
    ) in fields
    assert "*Coverage*\n<https://airflow.example/plugin/coverage|the Coverage page>" in fields
    assert message["blocks"][2]["text"]["text"] == (
        "```- 5 page(s) lost after retries\n- 2 answer(s) over download_maxsize\n"
        "dead letter: http://demo/funds/india/?page=3: connection reset\n"
        "dead letter: http://demo/funds/india/?page=4: HTTP 503 after 3 retries```"
    )
