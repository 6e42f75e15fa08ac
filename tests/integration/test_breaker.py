"""The circuit breaker per site in real runs (dag.test against the demo sites, a real
PostgreSQL): failed crawls open it, its runs are then skipped (not failed), and a forced run
or the end of the cooldown lets a crawl through that closes it again."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from offpeak.crawl.breaker import variable_key
from support import REPO

pytestmark = pytest.mark.integration

DAG_ID = "scrape__fx_rates__americas"
KEY = variable_key("fx_rates")
# XNYS trading days (Mon 1 June 2026 onwards) no other test crawls.
DAYS = ["2026-06-01", "2026-06-02", "2026-06-03", "2026-06-05", "2026-06-08", "2026-06-09"]


class BreakerVariable:
    """The breaker's Variable, read and written in the metadata DB (as the api-server would:
    the test process is not a task, so it has no Execution API to go through)."""

    def __init__(self, pg) -> None:
        self.uri = pg.uri("airflow")

    def _sql(self, sql: str, *params):
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else None

    def get(self) -> dict | None:
        rows = self._sql("SELECT val, is_encrypted FROM variable WHERE key = %s", KEY)
        if not rows:
            return None
        value, encrypted = rows[0]
        if encrypted:  # a Fernet key is configured
            from airflow.models.crypto import get_fernet

            value = get_fernet().decrypt(value.encode()).decode()
        return json.loads(value)

    def set(self, state: dict) -> None:
        self.delete()
        self._sql(
            "INSERT INTO variable (key, val, is_encrypted) VALUES (%s, %s, false)",
            KEY, json.dumps(state),
        )  # fmt: skip

    def delete(self) -> None:
        self._sql("DELETE FROM variable WHERE key = %s", KEY)


@pytest.fixture
def breaker_var(pg, airflow_db):
    """fx_rates's breaker Variable: absent before and after the test."""
    var = BreakerVariable(pg)
    var.delete()
    yield var
    var.delete()


@pytest.fixture
def fx_config(tmp_path: Path, monkeypatch):
    """``make(min_items)``: a config copy where fx_rates's breaker opens after 2 failures and
    ``min_items`` decides whether its crawls pass (the demo serves 60 items)."""

    def make(min_items: int) -> None:
        config = tmp_path / "config"
        if not config.exists():
            shutil.copytree(REPO / "include/config", config)
        path = config / "sites" / "fx_rates.yaml"
        data = yaml.safe_load(path.read_text())
        data["quality"]["min_items"] = min_items
        data["circuit_breaker"] = {"failures": 2, "cooldown_minutes": 60}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))

    return make


def run(dagbag, monkeypatch, day: str, **conf):
    dag = dagbag.get_dag(DAG_ID)
    for task in dag.tasks:
        monkeypatch.setattr(task, "retries", 0)  # one failed try is one failed crawl
    return dag.test(run_conf={"trading_date": day, "ignore_window": True, **conf})


def states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def output(capfd, caplog) -> str:
    captured = capfd.readouterr()
    text = captured.out + captured.err + caplog.text
    caplog.clear()
    return text


def loaded_dates(warehouse, schema: str) -> list[str]:
    (table,) = warehouse.execute("SELECT to_regclass(%s)", (f"{schema}.fx_rates",)).fetchone()
    if table is None:
        return []
    rows = warehouse.execute(
        f"SELECT DISTINCT trading_date::text FROM {schema}.fx_rates WHERE region = 'americas' "
        "ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def opened_at(state: dict) -> datetime:
    return datetime.fromisoformat(state["opened_at"])


def test_failed_crawls_open_the_breaker_then_runs_skip_until_forced(
    dagbag, warehouse, schema, breaker_var, fx_config, monkeypatch, capfd, caplog
):
    fx_config(min_items=1000)
    first = run(dagbag, monkeypatch, DAYS[0])
    assert (first.state, states(first)["scrape"]) == ("failed", "failed")
    state = breaker_var.get()
    assert (state["failures"], state["opened_at"]) == (1, None)

    second = run(dagbag, monkeypatch, DAYS[1])
    assert second.state == "failed"
    state = breaker_var.get()
    assert state["failures"] == 2
    assert datetime.now(tz=UTC) - opened_at(state) < timedelta(minutes=5)
    assert state["last_failure"]["region"] == "americas"
    assert "quality check min_items failed for site fx_rates" in state["last_failure"]["reason"]
    text = output(capfd, caplog)
    assert "Circuit breaker for site fx_rates opened after 2 consecutive failed crawls" in text

    # Open: the run is skipped, not failed, and crawls nothing.
    third = run(dagbag, monkeypatch, DAYS[2])
    assert third.state == "success"
    assert states(third) == dict.fromkeys(("scrape", "transform", "load", "mark_rollup"), "skipped")
    text = output(capfd, caplog)
    assert (
        "circuit breaker open for site 'fx_rates': 2 consecutive failed crawls (last: region "
        "americas at "
    ) in text
    assert f'Trigger with {{"ignore_breaker": true}} to crawl now, or delete Variable {KEY}' in text
    assert "Crawling site fx_rates" not in text
    assert breaker_var.get() == state  # a skipped run does not count
    assert loaded_dates(warehouse, schema) == []

    # Fixed site, forced run: it crawls, loads and closes the breaker.
    fx_config(min_items=10)
    forced = run(dagbag, monkeypatch, DAYS[3], ignore_breaker=True)
    assert forced.state == "success", states(forced)
    assert breaker_var.get()["failures"] == 0 and breaker_var.get()["opened_at"] is None
    text = output(capfd, caplog)
    assert "bypassed by ignore_breaker=true" in text
    assert "Circuit breaker for site fx_rates closed" in text

    plain = run(dagbag, monkeypatch, DAYS[4])
    assert plain.state == "success"
    assert states(plain)["scrape"] == "success"
    assert loaded_dates(warehouse, schema) == [DAYS[3], DAYS[4]]


def test_after_the_cooldown_a_run_crawls_and_a_failure_reopens_the_breaker_at_once(
    dagbag, breaker_var, fx_config, monkeypatch, capfd, caplog
):
    expired = (datetime.now(tz=UTC) - timedelta(minutes=61)).strftime("%Y-%m-%dT%H:%M:%SZ")
    last = {"region": "europe", "at": expired, "reason": "crawl failed"}
    breaker_var.set({"failures": 2, "opened_at": expired, "last_failure": last})

    # Half-open: the run crawls (not skipped); its failure opens the breaker again at once,
    # with a fresh cooldown (a success would close it, as the forced run above shows).
    fx_config(min_items=1000)
    failed = run(dagbag, monkeypatch, DAYS[5])
    assert (failed.state, states(failed)["scrape"]) == ("failed", "failed")
    text = output(capfd, caplog)
    assert "Circuit breaker for site fx_rates is half-open: its 60-minute cooldown ended" in text
    assert "Crawling site fx_rates (json_api) region americas trading date 2026-06-09" in text
    state = breaker_var.get()
    assert state["failures"] == 3
    assert datetime.now(tz=UTC) - opened_at(state) < timedelta(minutes=5)
    assert state["last_failure"]["region"] == "americas"
    assert "Circuit breaker for site fx_rates opened after 3 consecutive failed crawls" in text
