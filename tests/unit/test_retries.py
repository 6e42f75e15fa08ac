"""Unit tests for plugins/offpeak/retries.py: which failures are retried, which fail at once."""

from __future__ import annotations

import inspect

import pytest
from airflow.sdk.exceptions import AirflowFailException

from offpeak import retries
from offpeak.config import ConfigError
from offpeak.errors import Final
from offpeak.pipeline.quality import QualityCheckFailed
from offpeak.pipeline.transform import RejectRatioExceeded
from offpeak.schedule.tradingtime import NotATradingDay
from offpeak.warehouse.load import LoadCountMismatch
from offpeak.warehouse.schema import SchemaMismatch


def raised_by(exc: BaseException) -> BaseException:
    """What leaves a ``fail_fast`` block in which ``exc`` was raised."""
    with pytest.raises(BaseException) as info, retries.fail_fast():
        raise exc
    return info.value


@pytest.mark.parametrize(
    "exc",
    [
        RejectRatioExceeded(
            "site 'funds': 9 of 10 records rejected (90.0%) exceeds quality.max_reject_ratio 20.0%"
        ),
        QualityCheckFailed("quality check min_items failed for funds india 2026-11-20: 0 < 1"),
        NotATradingDay("2026-12-25 is not a trading day of XASX (region oceania): Christmas"),
        ConfigError("sites/funds.yaml: invalid config for site 'funds'"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_deterministic_failure_fails_without_retry_and_keeps_its_message(exc):
    failure = raised_by(exc)
    assert type(failure) is AirflowFailException  # Airflow fails such a task without retrying
    assert str(failure) == str(exc)
    assert failure.__cause__ is exc  # the task log shows the original traceback too
    assert retries.reported(failure) is exc  # and the alert names the original type


def test_a_load_check_subclass_is_deterministic_too():
    from offpeak.warehouse.load import DeletionGuardTripped

    exc = DeletionGuardTripped("the load would delete 40% of the partition, more than 10%")
    assert type(raised_by(exc)) is AirflowFailException


@pytest.mark.parametrize(
    "exc",
    [
        OSError("[Errno 104] Connection reset by peer"),
        TimeoutError("timed out"),
        RuntimeError("the crawl ended with exit code 1; see the crawl log above"),
        ValueError("params.start_urls: ['x'] are not start URLs of site 'funds'"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_network_and_crawl_failures_pass_through_to_be_retried(exc):
    assert raised_by(exc) is exc
    assert retries.reported(exc) is exc


def test_a_crawl_failure_passes_through():
    from offpeak.crawl.operator import CrawlFailed

    exc = CrawlFailed("site 'funds' region 'india' 2026-11-20: 3 requests timed out")
    assert raised_by(exc) is exc


def test_an_airflow_fail_exception_of_its_own_is_left_as_it_is():
    exc = AirflowFailException("rollup__europe run: funds failed; no summary was written")
    assert raised_by(exc) is exc
    assert retries.reported(exc) is exc


@pytest.mark.parametrize(
    "exc",
    [
        LoadCountMismatch("COPY staged 9 rows, transform wrote 10"),
        SchemaMismatch("column 'last' is numeric in the table and text in sites/funds.yaml"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_the_load_and_schema_checks_fail_without_retry(exc):
    failure = raised_by(exc)
    assert type(failure) is AirflowFailException and failure.__cause__ is exc


def test_a_failure_whose_class_carries_the_final_mark_fails_at_once():
    """The policy reads the class: a new final failure needs no list kept in sync."""

    class SiteRetired(Final, LookupError):
        pass

    exc = SiteRetired("site 'funds' was retired on 2026-11-30")
    assert isinstance(exc, LookupError)  # the mark keeps the built-in base
    failure = raised_by(exc)
    assert type(failure) is AirflowFailException and retries.reported(failure) is exc
    unmarked = LookupError("no such site")
    assert raised_by(unmarked) is unmarked


def test_as_a_decorator_it_keeps_the_callables_signature_and_result():
    """PythonOperator passes context keys by the callable's signature."""

    @retries.fail_fast()
    def summarize(region: str, ti=None, **context):
        if region == "closed":
            raise NotATradingDay("2026-11-26 is not a trading day")
        return region

    assert list(inspect.signature(summarize).parameters) == ["region", "ti", "context"]
    assert summarize("europe") == "europe"
    with pytest.raises(AirflowFailException, match="2026-11-26 is not a trading day"):
        summarize("closed")


def test_the_pipeline_tasks_fail_fast_on_a_broken_config(monkeypatch):
    from offpeak import tasks
    from offpeak.rollups import summaries

    def broken(name, config_dir=None):
        raise ConfigError(f"sites/{name}.yaml: invalid config for site {name!r}")

    def no_regions():
        raise ConfigError("regions.yaml")

    monkeypatch.setattr("offpeak.config.get_site", broken)
    for task in (tasks.transform, tasks.load):
        with pytest.raises(AirflowFailException, match="invalid config for site 'funds'"):
            task("funds", "india", ti=None, run_id="manual__1")
    monkeypatch.setattr("offpeak.config.load_project", no_regions)
    for task, args in ((summaries.summarize_region, ("india",)), (summaries.summarize_global, ())):
        with pytest.raises(AirflowFailException, match=r"^regions\.yaml$"):
            task(*args)


def test_the_failure_alert_names_the_original_type_of_a_fail_fast_failure():
    from types import SimpleNamespace

    from offpeak.alerts.notifier import FailureNotifier

    failure = raised_by(NotATradingDay("2026-12-25 is not a trading day of XASX (region oceania)"))
    ti = SimpleNamespace(
        dag_id="scrape__funds__oceania", task_id="scrape", try_number=1, run_id="manual__1",
        log_url="http://airflow/log", xcom_pull=lambda task_ids: None,
    )  # fmt: skip
    context = {"ti": ti, "exception": failure, "dag_run": SimpleNamespace(conf={})}
    payload = FailureNotifier(http_conn_id="offpeak_alerts", region="oceania").payload(context)
    detail = payload["blocks"][-1]["text"]["text"]
    assert (
        detail == "```NotATradingDay: 2026-12-25 is not a trading day of XASX (region oceania)```"
    )
