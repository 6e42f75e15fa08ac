"""The nature of a failure, carried by its type: a final failure is not worth retrying."""

# As dlt's TerminalException: the retry policy (offpeak.retries) reads the class, so a final
# failure says so where it is defined, and a new one needs no list kept in sync elsewhere.

from __future__ import annotations


class Final(Exception):
    """Mark of a failure the same input reproduces on every try (a failed quality check, too
    many rejected records, a broken config, a date that is no trading day): a task fails at
    once, without retries. Mixed in first, before the built-in base it keeps:
    ``class NotATradingDay(Final, ValueError)``. Subclasses are final too."""


def is_final(exc: BaseException | None) -> bool:
    """True when retrying cannot change the outcome of ``exc``."""
    return isinstance(exc, Final)
