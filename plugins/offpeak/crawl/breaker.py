"""A circuit breaker per site: after N failed crawls in a row, skip its runs for a cooldown."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from offpeak.params import run_param

PREFIX = "offpeak_breaker__"
DEFAULT_FAILURES = 3
DEFAULT_COOLDOWN_MINUTES = 60
PARAM = "ignore_breaker"
MAX_REASON = 500  # the Variable is a status note, not a log archive


def variable_key(site_name: str) -> str:
    return f"{PREFIX}{site_name}"


@dataclass(frozen=True)
class Settings:
    failures: int  # consecutive failed crawls that open the breaker; 0 switches it off
    cooldown: timedelta

    @classmethod
    def of(cls, site: Any) -> Settings:
        # getattr: the circuit_breaker section of the site config may not exist (older
        # config models); the defaults then apply.
        cfg = getattr(site, "circuit_breaker", None)
        failures = getattr(cfg, "failures", DEFAULT_FAILURES)
        minutes = getattr(cfg, "cooldown_minutes", DEFAULT_COOLDOWN_MINUTES)
        return cls(failures=int(failures), cooldown=timedelta(minutes=int(minutes)))


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _site_name(site: Any) -> str:
    return getattr(site, "name", None) or str(site)


class _Unreadable(Exception):
    """The Variable could not be read (not: it is absent or invalid)."""


def _load(site_name: str, log: Any) -> dict[str, Any] | None:
    """The site's state; None when absent or not valid state (a warning then: the next
    record() overwrites it). Raises _Unreadable when the Execution API call fails."""
    from airflow.sdk import Variable

    key = variable_key(site_name)
    try:
        raw = Variable.get(key, default=None)
    except Exception as err:
        log.warning("Circuit breaker: could not read Variable %s (%s); ignoring it", key, err)
        raise _Unreadable(key) from err
    if raw is None:
        return None
    try:
        state = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(state, dict):
            raise ValueError(f"expected a JSON object, got {type(state).__name__}")
        state["failures"] = int(state.get("failures") or 0)
        _parse(state.get("opened_at"))  # fail here, not later, on a bad timestamp
    except (TypeError, ValueError) as err:
        log.warning(
            "Circuit breaker: Variable %s is not valid breaker state (%s); treating the "
            "breaker as closed (the next crawl overwrites it)", key, err,
        )  # fmt: skip
        return None
    return state


def read(site_name: str, log: Any) -> dict[str, Any] | None:
    """The site's state, or None when there is none or it cannot be read: an unreadable
    breaker lets the crawl run rather than blocking the pipeline."""
    try:
        return _load(site_name, log)
    except _Unreadable:
        return None


def write(site_name: str, state: dict[str, Any], log: Any) -> bool:
    from airflow.sdk import Variable

    key = variable_key(site_name)
    try:
        Variable.set(
            key,
            json.dumps(state),
            description=f"Circuit breaker of site {site_name} (offpeak.crawl.breaker); delete it "
            "to close the breaker",
        )
    except Exception as err:
        log.warning("Circuit breaker: could not write Variable %s (%s); carrying on", key, err)
        return False
    return True


def _describe_last(state: dict[str, Any]) -> str:
    last = state.get("last_failure") or {}
    if not last:
        return "no failure recorded"
    return f"region {last.get('region')} at {last.get('at')}: {last.get('reason')}"


def gate(site: Any, region_name: str, context: Any, log: Any) -> None:
    """At the start of a crawl: raise AirflowSkipException while the site's breaker is open.

    After the cooldown the breaker is half-open: this run crawls, and its ``record`` closes
    the breaker or opens it again. ``{"ignore_breaker": true}`` in the run's params closes it
    and crawls.
    """
    settings = Settings.of(site)
    name = _site_name(site)
    if settings.failures <= 0:
        return
    state = read(name, log)
    opened_at = _parse(state.get("opened_at")) if state else None
    if opened_at is None:
        return
    until = opened_at + settings.cooldown
    key = variable_key(name)
    if run_param(context, PARAM, False):
        log.warning(
            "Circuit breaker for site %s is open (%d failed crawls, last: %s), bypassed by "
            "%s=true: crawling now", name, state["failures"], _describe_last(state), PARAM,
        )  # fmt: skip
        # An explicit manual run closes it: the operator has looked, the count starts again.
        closed = {"failures": 0, "opened_at": None, "last_failure": state.get("last_failure")}
        if write(name, closed, log):
            log.info("Circuit breaker for site %s closed by %s=true", name, PARAM)
        return
    if _now() >= until:
        log.info(
            "Circuit breaker for site %s is half-open: its %d-minute cooldown ended at %s, so "
            "this run of region %s crawls; success closes the breaker, failure opens it again",
            name, settings.cooldown // timedelta(minutes=1), _iso(until), region_name,
        )  # fmt: skip
        return
    from airflow.sdk.exceptions import AirflowSkipException

    message = (
        f"circuit breaker open for site {name!r}: {state['failures']} consecutive failed "
        f"crawls (last: {_describe_last(state)}); runs are skipped until {_iso(until)}. "
        f'Trigger with {{"{PARAM}": true}} to crawl now, or delete Variable {key}.'
    )
    log.warning("Skipping the crawl of region %s: %s", region_name, message)
    raise AirflowSkipException(message)


def record(site: Any, region_name: str, *, ok: bool, reason: str = "", log: Any) -> None:
    """After a crawl: a success closes the breaker, a failure counts towards opening it."""
    settings = Settings.of(site)
    name = _site_name(site)
    if settings.failures <= 0:
        return
    try:
        state = _load(name, log)
    except _Unreadable:
        return  # writing blind could overwrite an open breaker with a fresh count
    if ok:
        if not state or (not state["failures"] and not state.get("opened_at")):
            return  # already closed: no write per healthy crawl
        was_open = bool(state.get("opened_at"))
        closed = {"failures": 0, "opened_at": None, "last_failure": state.get("last_failure")}
        if not write(name, closed, log):
            return
        if was_open:
            log.info(
                "Circuit breaker for site %s closed: region %s crawled successfully",
                name, region_name,
            )  # fmt: skip
        else:
            log.info(
                "Circuit breaker for site %s: failure count reset (region %s crawled "
                "successfully)", name, region_name,
            )  # fmt: skip
        return
    now = _now()
    state = state or {"failures": 0, "opened_at": None}
    state["failures"] += 1
    lines = (reason or "").strip().splitlines()
    reason = lines[0][:MAX_REASON] if lines else ""
    state["last_failure"] = {"region": region_name, "at": _iso(now), "reason": reason}
    opened_at = _parse(state.get("opened_at"))
    # A closed breaker opens when the count reaches N. An expired opening is the half-open
    # state: its one trial crawl failed, so it opens again at once with a fresh cooldown.
    half_open = opened_at is not None and now >= opened_at + settings.cooldown
    opening = half_open or (opened_at is None and state["failures"] >= settings.failures)
    if opening:
        state["opened_at"] = _iso(now)
    if not write(name, state, log):
        return
    if opening:
        log.warning(
            "Circuit breaker for site %s opened after %d consecutive failed crawls (threshold "
            "%d): its runs in every region are skipped until %s (cooldown %d min). Last "
            "failure, region %s: %s",
            name, state["failures"], settings.failures, _iso(now + settings.cooldown),
            settings.cooldown // timedelta(minutes=1), region_name, reason,
        )  # fmt: skip
    elif opened_at is not None:  # a forced run (ignore_breaker) failed while it was open
        log.warning(
            "Circuit breaker for site %s stays open until %s: %d consecutive failed crawls",
            name, _iso(opened_at + settings.cooldown), state["failures"],
        )  # fmt: skip
    else:
        log.info(
            "Circuit breaker for site %s: %d consecutive failed crawl(s); it opens at %d",
            name, state["failures"], settings.failures,
        )  # fmt: skip
