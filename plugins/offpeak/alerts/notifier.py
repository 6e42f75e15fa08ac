"""Alerts to a Slack-compatible webhook: a task's final failure, a run past its deadline, and a
partial day (loaded without every page: a warning, per run or as a region's daily digest).

The webhook URL is a secret: it lives in an Airflow HTTP connection (``alerts.http_conn_id``
of regions.yaml, ``offpeak_alerts`` by default), is masked in logs and never logged. Without
that connection no alert is sent and a warning says so. A failed post is logged, never
raised: an alert must not hide the failure it reports.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime
from typing import Any

from airflow.sdk import BaseNotifier

from offpeak import config, params, retries
from offpeak.connections import base_url_from_connection

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10
MAX_EXCEPTION_CHARS = 1500


def post(http_conn_id: str, payload: dict[str, Any]) -> bool:
    """POST ``payload`` as JSON to the connection's webhook; True when it answered 2xx."""
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

    try:
        conn = BaseHook.get_connection(http_conn_id)
    except Exception:  # AirflowNotFoundException, or a secrets backend error
        log.warning("No alert sent: Airflow connection %r is not defined", http_conn_id)
        return False
    url = base_url_from_connection(conn)
    mask_secret(url)
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            ok = 200 <= response.status < 300
    except OSError as exc:
        log.error("Alert to connection %r failed: %s", http_conn_id, exc)
        return False
    log.info("Alert posted to connection %r (HTTP %s)", http_conn_id, response.status)
    return ok


def slack_message(title: str, facts: dict[str, Any], detail: str | None = None) -> dict:
    """Slack's webhook format: ``text`` (the notification line) and ``blocks``; other chat
    tools that take Slack-compatible JSON read ``text``."""
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{value}"}
        for name, value in facts.items()
        if value not in (None, "")
    ]
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": title}},
        {"type": "section", "fields": fields[:10]},  # Slack's limit per section
    ]
    if detail:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{detail}```"}})
    return {"text": title, "blocks": blocks}


def _trading_date(region: str | None, context: Any) -> str | None:
    """For the alert: the date the run was given (as given: the alert goes out even when it
    is wrong), else what its scrape or summary task said, else the date of its data interval
    (None when none of them tells)."""
    stated = _stated(params.run_conf(context))
    if stated:
        return stated
    ti = context.get("ti")
    for task_id in ("scrape", "summarize"):
        try:
            pointer = ti.xcom_pull(task_ids=task_id) if ti is not None else None
        except Exception:  # no such task in this DAG
            pointer = None
        if isinstance(pointer, dict) and pointer.get("trading_date"):
            return pointer["trading_date"]
    if context.get("data_interval_start") is not None and region:
        regions = config.load_project().regions
        if region in regions:
            # No date in the conf: the one resolver reads the data interval's.
            return params.trading_date(regions[region], context).isoformat()
    return None


def _stated(conf: dict[str, Any]) -> str | None:
    """``conf.trading_date`` as given, unchecked; None when the run names none."""
    value = conf.get("trading_date")
    return str(value) if value else None


def _reported_date(run: dict[str, Any], timezone: str) -> str | None:
    """The trading date of a run as the REST API shows it (a Deadline Alert's context), for
    a message: ``conf.trading_date`` as given, else the local date (in ``timezone``) of its
    ``data_interval_start``, else None."""
    from zoneinfo import ZoneInfo

    stated = _stated(run.get("conf") or {})
    if stated:
        return stated
    start = run.get("data_interval_start")
    if not start:
        return None
    moment = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(timezone)).date().isoformat()


class FailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every task: Airflow calls it once retries are exhausted.

    Posts DAG, task, site, region, trading date, try number, the exception and the log URL.
    """

    template_fields = ()

    def __init__(
        self, *, http_conn_id: str, site: str | None = None, region: str | None = None
    ) -> None:
        super().__init__()
        self.http_conn_id = http_conn_id
        self.site = site
        self.region = region

    def payload(self, context: Any) -> dict:
        ti = context["ti"]
        # A failure that fail_fast stopped from retrying is named by its original type.
        exception = retries.reported(context.get("exception"))
        error = f"{type(exception).__name__}: {exception}" if exception else "(no exception)"
        if len(error) > MAX_EXCEPTION_CHARS:
            error = error[: MAX_EXCEPTION_CHARS - 1] + "…"
        try:
            trading_date = _trading_date(self.region, context)
        except Exception as exc:  # the alert goes out even if the date cannot be told
            trading_date = f"unknown ({exc})"
        facts = {
            "DAG": ti.dag_id,
            "Task": ti.task_id,
            "Site": self.site,
            "Region": self.region,
            "Trading date": trading_date,
            "Try": ti.try_number,
            "Run": ti.run_id,
            "Log": f"<{ti.log_url}|open the log>",
        }
        title = f":red_circle: {ti.dag_id}.{ti.task_id} failed (try {ti.try_number})"
        return slack_message(title, facts, error)

    def notify(self, context: Any) -> None:
        post(self.http_conn_id, self.payload(context))


def deadline_missed(
    context: dict, http_conn_id: str, region: str, window: str, timezone: str, grace: int = 0
) -> None:
    """Deadline Alert callback (run by the executor): a scrape run has not finished by the end
    of its off-peak window (plus ``grace`` minutes). ``context`` holds the run, as the REST
    API shows it, and the deadline."""
    run = context.get("dag_run") or {}
    deadline = (context.get("deadline") or {}).get("deadline_time")
    if isinstance(deadline, datetime):
        deadline = deadline.isoformat()
    facts = {
        "DAG": run.get("dag_id"),
        "Run": run.get("dag_run_id"),
        "Region": region,
        "Trading date": _reported_date(run, timezone),
        "Window": f"{window} {timezone}",
        "Deadline": deadline,
        "State": run.get("state"),
    }
    title = f":warning: {run.get('dag_id')} has not finished by the end of its off-peak window" + (
        f" (+{grace} min)" if grace else ""
    )
    post(http_conn_id, slack_message(title, facts))


def _ui_url(path: str) -> str:
    """An Airflow UI address: ``[api] base_url`` (what task log links use) plus ``path``."""
    from airflow.configuration import conf

    return f"{conf.get('api', 'base_url', fallback='http://localhost:8080/').rstrip('/')}/{path}"


def coverage_url() -> str:
    """The Coverage page in Airflow's UI."""
    return _ui_url("plugin/coverage")


def partial_day(
    http_conn_id: str, *, dag_id: str, run_id: str, scraped: dict[str, Any],
    loaded: dict[str, Any],
) -> bool:  # fmt: skip
    """A warning that a run loaded a partial day: site, region, trading date, each cause with
    its count, the first dead letters, links to the run and to the Coverage page. The load
    posts it once, after its commit (alerts.partial: each)."""
    from urllib.parse import quote

    causes = scraped.get("partial_reasons") or [
        f"{count} {cause}" for cause, count in sorted((scraped.get("incomplete") or {}).items())
    ]
    letters = scraped.get("first_dead_letters") or []
    facts = {
        "Site": scraped.get("site"),
        "Region": scraped.get("region"),
        "Trading date": scraped.get("trading_date"),
        "Rows": f"{loaded.get('rows_inserted', 0)} inserted, {loaded.get('rows_updated', 0)} "
        f"updated, none deleted ({loaded.get('partition_rows', '?')} held)",
        "Dead letters": scraped.get("dead_letters", 0),
        "Run": f"<{_ui_url(f'dags/{dag_id}/runs/{quote(run_id)}')}|{run_id}>",
        "Coverage": f"<{coverage_url()}|the Coverage page>",
    }
    detail = "\n".join(
        [f"- {cause}" for cause in causes]
        + [f"dead letter: {x.get('url')}: {x.get('reason')}" for x in letters]
    )
    title = (
        f":large_yellow_circle: {dag_id} loaded a partial day for {scraped.get('trading_date')}: "
        "its crawl did not read every page, so no row was deleted"
    )
    return post(http_conn_id, slack_message(title, facts, detail or None))


def partial_digest(
    http_conn_id: str, *, region: str, trading_date: str, partial: list[dict[str, Any]]
) -> bool:
    """One message for a region's trading date listing its partial sites (alerts.partial:
    digest), from the region rollup."""
    lines = [f"- {p['site']}: {p['rows']} rows held, run {p['run_id']}" for p in partial]
    facts = {
        "Region": region,
        "Trading date": trading_date,
        "Partial sites": len(partial),
        "Coverage": f"<{coverage_url()}|the Coverage page>",
    }
    title = (
        f":large_yellow_circle: {region} {trading_date}: {len(partial)} site(s) loaded a "
        "partial day (crawls that did not read every page; no row was deleted)"
    )
    return post(http_conn_id, slack_message(title, facts, "\n".join(lines)))
