"""The retry policy: final failures fail at once, the others retry with backoff."""

# A task's retries (the site's dag.retries, doubling from retry_delay_seconds up to
# max_retry_delay_seconds) are for what may pass: a network error, a site that is down, a
# crawl cut short. A failure the same input reproduces on every try (a failed quality check,
# too many rejected records, a broken config, a date that is no trading day) is final: its
# class carries offpeak.errors.Final, and fail_fast() re-raises it as Airflow's
# AirflowFailException with the same message, so Airflow fails the task without retrying and
# alerts once.

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from offpeak.errors import is_final


@contextmanager
def fail_fast(also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Re-raise a final failure as ``AirflowFailException`` (same message, the
    original chained as its cause); let every other exception through untouched, to be
    retried. ``also``: classes of someone else's that are final where this is used. A
    context manager, and a decorator: ``@retries.fail_fast()``."""
    try:
        yield
    except Exception as exc:
        if not (is_final(exc) or isinstance(exc, also)):
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc


def reported(exc: BaseException | None) -> BaseException | None:
    """The exception to name in an alert: for a failure :func:`fail_fast` converted, the
    original (its type says what failed), else ``exc`` itself."""
    cause = getattr(exc, "__cause__", None)
    if cause is None or not is_final(cause):
        return exc
    from airflow.sdk.exceptions import AirflowFailException

    return cause if isinstance(exc, AirflowFailException) else exc
