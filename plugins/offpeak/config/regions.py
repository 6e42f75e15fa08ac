"""The models of regions.yaml: regions, off-peak windows, calendar overrides, rollups, alerts."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from offpeak import naming
from offpeak.config.common import IDENTIFIER, _id_part, _Strict
from offpeak.schedule.calendars import check_exchange
from offpeak.schedule.tradingtime import window_text

# A region name: an identifier that is also part of DAG ids.
RegionName = Annotated[str, Field(pattern=IDENTIFIER), _id_part("region name")]


class OffPeakWindow(_Strict):
    """Local wall-clock window; ``end <= start`` means the window crosses midnight."""

    start: time = Field(
        description='Local time the window opens, quoted: "HH:MM" or "HH:MM:SS". A window '
        "opening before noon belongs to the previous day's session."
    )
    end: time = Field(
        description="Local time the window closes, quoted; `end <= start` crosses midnight."
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 18:30 as the base-60 integer 1110.
        if isinstance(value, int):
            raise ValueError('write times as quoted strings, e.g. "18:30"')
        return value

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return window_text(self.start, self.end)


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _dated_reasons(value: object, field: str) -> dict[date, str]:
    """``{"2026-01-15": "why"}`` (a date YAML read unquoted too) as {date: reason}, sorted;
    ValueError naming the entry at fault."""
    example = f'e.g. {field}: {{"2026-01-15": "municipal elections"}}'
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of quoted dates to the reason, {example}")
    days: dict[date, str] = {}
    for key, reason in value.items():
        if isinstance(key, datetime):
            raise ValueError(f"{key}: a date without a time, {example}")
        if isinstance(key, date):
            day = key
        elif isinstance(key, str) and _ISO_DAY.fullmatch(key.strip()):
            try:
                day = date.fromisoformat(key.strip())
            except ValueError as exc:
                raise ValueError(f"{key!r} is not a date: {exc}") from None
        else:
            raise ValueError(f"{key!r} is not a date in the form YYYY-MM-DD, {example}")
        if day in days:
            raise ValueError(f"{day} is listed twice")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{day}: give the reason as text after the date, {example}")
        days[day] = reason.strip()
    return dict(sorted(days.items()))


class Region(_Strict):
    name: str = Field("", description="Set from the key under `regions`; not written.")
    timezone: str = Field(description="IANA timezone of the region, e.g. America/New_York.")
    exchange: Annotated[str, Field(pattern=r"^[A-Z0-9]{4}$")] = Field(
        description="ISO 10383 MIC of the exchange whose trading calendar the region follows, "
        "e.g. XNYS (docs/scheduling.md lists them)."
    )
    off_peak: OffPeakWindow = Field(description="The local window the region's crawls run in.")
    # Days the exchange calendar gets wrong, each with its reason.
    closures: dict[date, str] = Field(
        default_factory=dict,
        description='Days without a session although the calendar has one: {"YYYY-MM-DD": '
        "reason} (elections, mourning days).",
    )
    extra_sessions: dict[date, str] = Field(
        default_factory=dict,
        description='Days with a session although the calendar has none: {"YYYY-MM-DD": '
        "reason} (a special Saturday session).",
    )

    @field_validator("closures", "extra_sessions", mode="before")
    @classmethod
    def _dated(cls, value: object, info: ValidationInfo) -> dict[date, str]:
        return _dated_reasons(value, str(info.field_name))

    @field_validator("extra_sessions")
    @classmethod
    def _not_also_closed(cls, value: dict[date, str], info: ValidationInfo) -> dict[date, str]:
        both = sorted(set(value) & set(info.data.get("closures", {})))
        if both:
            raise ValueError(
                f"{', '.join(map(str, both))} also listed in closures: a day is either "
                "closed or trades; keep it in one of the two"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @field_validator("exchange")
    @classmethod
    def _known_calendar(cls, value: str) -> str:
        return check_exchange(value)  # UnknownExchange is a ValueError: pydantic reports it


class Rollups(_Strict):
    """How rollup__<region> and rollup__global wait for their inputs."""

    poke_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        60,
        description="The sensors defer: the triggerer checks their inputs this often; no "
        "worker slot is held.",
    )
    soft_fail: bool = Field(
        False,
        description="true: a failed or timed-out input skips the rollup instead of failing it.",
    )
    global_delay_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = Field(
        30,
        description="rollup__global runs this long after the last region's window of the "
        "date has closed.",
    )
    global_timeout_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = Field(
        120, description="How long rollup__global waits at most for the region rollups."
    )


class Alerts(_Strict):
    """Where failures and missed deadlines are posted (Slack-compatible JSON)."""

    http_conn_id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = Field(
        "offpeak_alerts",
        description="An Airflow HTTP connection whose host is the webhook URL; without it no "
        "alert is sent.",
    )
    deadline_grace_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = Field(
        0,
        description="Alert when a scrape run has not finished this long after its off-peak "
        "window closed.",
    )
    partial: Literal["each", "digest", "off"] = Field(
        "each",
        description="A partial day (a crawl that loaded without every page): `each` posts a "
        "warning per run, from its load; `digest` one message per region and trading date, "
        "from the region rollup; `off` none (the Coverage page still shows it).",
    )


class RegionsFile(_Strict):
    """regions.yaml: the regions by name, and the rollups' and alerts' settings."""

    regions: dict[RegionName, Region] = Field(
        description=f"Region name -> region; the name is part of DAG ids, {naming.GLOBAL!r} "
        "is reserved."
    )
    rollups: Rollups = Field(Rollups(), description="How the rollup DAGs wait for inputs.")
    alerts: Alerts = Field(Alerts(), description="Where failures and missed deadlines go.")

    @model_validator(mode="after")
    def _name_regions(self) -> RegionsFile:
        if naming.GLOBAL in self.regions:
            raise ValueError(
                f"region name {naming.GLOBAL!r} is reserved "
                f"({naming.rollup_dag_id(naming.GLOBAL)} spans all regions)"
            )
        for name, region in self.regions.items():
            object.__setattr__(region, "name", name)
        return self
