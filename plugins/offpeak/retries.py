"""The retry policy: deterministic failures fail at once, the others retry with backoff."""

# A task's retries (the site's dag.retries, doubling from retry_delay_seconds up to
# max_retry_delay_seconds) are for what may pass: a network error, a site that is down, a
# crawl cut short. A failure the same input reproduces on every try (a failed quality check,
# too many rejected records, a broken config, a date that is no trading day) is final:
# fail_fast() re-raises it as Airflow's AirflowFailException with the same message, so
# Airflow fails the task without retrying and alerts once.
#
# The deterministic types are named by import path, not imported: this module imports nothing
# of the project (no import cycles, nothing heavy for DAG parsing), and a type whose module
# was never imported cannot have been raised.

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

# "module:Class"; subclasses count too (DeletionGuardTripped is a QualityCheckFailed).
DETERMINISTIC = (
    "offpeak.config:ConfigError",
    "offpeak.schedule.tradingtime:NotATradingDay",
    "offpeak.pipeline.quality:QualityCheckFailed",
    "offpeak.pipeline.transform:RejectRatioExceeded",
    "offpeak.warehouse.load:DeletionGuardTripped",
    "offpeak.warehouse.load:LoadCountMismatch",
    "offpeak.warehouse.schema:SchemaMismatch",
)


def deterministic_types() -> tuple[type[BaseException], ...]:
    """The classes of :data:`DETERMINISTIC` whose modules are imported."""
    found = []
    for path in DETERMINISTIC:
        module_name, _, name = path.partition(":")
        cls = getattr(sys.modules.get(module_name), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def is_deterministic(exc: BaseException) -> bool:
    """True when retrying cannot change the outcome of ``exc``."""
    return isinstance(exc, deterministic_types())


@contextmanager
def fail_fast() -> Iterator[None]:
    """Re-raise a deterministic failure as ``AirflowFailException`` (same message, the
    original chained as its cause); let every other exception through untouched, to be
    retried. A context manager, and a decorator: ``@retries.fail_fast()``."""
    try:
        yield
    except Exception as exc:
        if not is_deterministic(exc):
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc


def reported(exc: BaseException | None) -> BaseException | None:
    """The exception to name in an alert: for a failure :func:`fail_fast` converted, the
    original (its type says what failed), else ``exc`` itself."""
    cause = getattr(exc, "__cause__", None)
    if cause is None or not is_deterministic(cause):
        return exc
    from airflow.sdk.exceptions import AirflowFailException

    return cause if isinstance(exc, AirflowFailException) else exc
