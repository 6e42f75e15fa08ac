"""Rollup inputs: the sensor that waits for a site DAG's run of the rollup's trading date, and
the check that every input succeeded (which run that is: offpeak.rollups.dates)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.sensors.external_task import ExternalTaskSensor

from offpeak import params, retries
from offpeak.config import load_project

# rollup_logical_date: re-exported for callers of the former home of the rollup dates.
from offpeak.rollups.dates import rollup_clock, rollup_logical_date  # noqa: F401

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class TradingDateSensor(ExternalTaskSensor):
    """
    Wait for a task of another DAG on the same trading date.

    The upstream run is found by its logical date: the local midnight of this run's trading
    date in ``upstream_region``'s zone. The trading date comes from the run (conf, data
    interval, or for a run without a logical date the latest due day), so manual and REST runs
    wait for what an upstream will really have. When ``upstream_region`` does not trade on
    that date (a holiday there, or a closure regions.yaml lists), nothing is waited for: the
    sensor succeeds at once and says why.

    :param scope: whose trading days this DAG runs on: a region name or ``"global"``
    :param upstream_region: the region of the upstream DAG
    """

    ui_color = "#dfe9f7"

    def __init__(self, *, scope: str, upstream_region: str, **kwargs: Any) -> None:
        super().__init__(execution_date_fn=self.upstream_logical_date, **kwargs)
        self.scope = scope
        self.upstream_region = upstream_region

    def _day_and_clock(self, context: Any) -> tuple[date, Any]:
        project = load_project()
        day = params.trading_date(rollup_clock(project, self.scope), context)
        return day, rollup_clock(project, self.upstream_region)

    def upstream_logical_date(self, logical_date: datetime, **context: Any) -> datetime:
        day, clock = self._day_and_clock(context)
        return clock.midnight(day)

    def upstream_closed(self, context: Any) -> bool:
        day, clock = self._day_and_clock(context)
        if clock.is_day(day):
            return False
        why = clock.why_closed(day)  # a holiday, the weekend or a closure in regions.yaml
        self.log.info(
            "%s does not trade on %s (%s): not waiting for %s",
            self.upstream_region, day, why, self.external_dag_id,
        )  # fmt: skip
        return True

    def execute(self, context: Context) -> None:
        if not self.upstream_closed(context):
            with _final_on_upstream_failure():
                super().execute(context)

    def poke(self, context: Context) -> bool:
        with _final_on_upstream_failure():
            return self.upstream_closed(context) or super().poke(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        with _final_on_upstream_failure():
            super().execute_complete(context, event)


def _upstream_failed() -> tuple[type[BaseException], ...]:
    from airflow.providers.standard.exceptions import (
        ExternalDagFailedError,
        ExternalTaskFailedError,
        ExternalTaskGroupFailedError,
    )

    return ExternalTaskFailedError, ExternalTaskGroupFailedError, ExternalDagFailedError


def _final_on_upstream_failure() -> AbstractContextManager[None]:
    """A failed upstream fails the sensor for good: its retries are for a lost try (a worker
    killed or lost while it ran, before it deferred), never to wait on a failure again. A
    timeout is final already (BaseSensorOperator raises AirflowSensorTimeout)."""
    return retries.fail_fast(also=_upstream_failed())


def check_inputs(**context: Any) -> dict[str, str]:
    """The rollup's verdict (its last task, a teardown that always runs): fail if any other
    task of the run failed.

    ``fail_fast`` stops the other sensors as soon as one input fails, but it skips the tasks
    downstream, and Airflow judges a run by its leaves: without this task such a run would
    end "success"."""
    from airflow.sdk.exceptions import AirflowFailException

    ti, run_id = context["ti"], context["run_id"]
    others = [t for t in context["dag"].task_ids if t != ti.task_id]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=others, run_ids=[run_id])
    states = states.get(run_id, {})
    failed = {t: s for t, s in sorted(states.items()) if s in ("failed", "upstream_failed")}
    if failed:
        raise AirflowFailException(
            f"{ti.dag_id} {run_id}: {', '.join(f'{t} {s}' for t, s in failed.items())}; "
            "no summary was written for this date"
        )
    log.info("Every task of the rollup finished without failure: %s", states)
    return states


# ---------------------------------------------------------------------------- summaries
