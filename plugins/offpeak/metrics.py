"""The pipeline's metrics: every name it sends, and the calls that send them through Airflow."""

# Names, not tags. Airflow's StatsD client (statsd_on) sends tags only to Datadog or with
# statsd_influxdb_enabled; plain StatsD drops them. So the site and the region, and for a few
# metrics one more dimension (an HTTP status, an outcome, a kind of row change), are parts of
# the name: offpeak.crawl.pages.<site>.<region>. Airflow puts its [metrics] statsd_prefix in
# front (airflow.offpeak...), and include/docker/statsd/mapping.yml turns each name back into a
# Prometheus metric with labels (offpeak_crawl_pages_total{site, region}).
#
# A part of a name is a config identifier ([a-z][a-z0-9_]*), a status code or a fixed word, and
# _part() refuses anything else, so no URL (nor a secret in one) can become a metric name.
#
# Metrics never fail a task: a metric that cannot be sent is a warning in the task log (which
# never repeats a refused part).
# This module imports nothing of the project: the operator and the task callables hand it
# the numbers they already have.

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

COUNTER, TIMER = "counter", "timer"
_PART = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Metric:
    """One metric. ``name`` is its StatsD name; ``{site}``, ``{region}`` and ``{<label>}`` (when
    ``label`` is set) are filled in when it is sent. ``prometheus`` is the name the
    statsd-exporter mapping gives it, with the labels site, region and ``label``; ``values``
    are the label's values when they are a fixed set."""

    name: str
    kind: str
    prometheus: str
    description: str
    label: str | None = None
    values: tuple[str, ...] = ()

    def format(self, site: str, region: str, value: object = None) -> str:
        parts = {"site": site, "region": region}
        if self.label:
            if self.values and value not in self.values:
                raise ValueError(f"{self.name}: {value!r} is not one of {self.values}")
            parts[self.label] = value
        return self.name.format(**{k: _part(v) for k, v in parts.items()})


def _part(value: object) -> str:
    text = str(value)
    if not _PART.fullmatch(text):
        # The value is not repeated: it could be a URL with a key in it.
        raise ValueError(
            f"a value of {len(text)} characters cannot be part of a metric name: only letters, "
            "digits, '_' and '-' can"
        )
    return text


def _shown(value: str) -> str:
    """``value`` for the log, unless it is no plain word (it could hold a secret)."""
    return value if _PART.fullmatch(value) else "(not shown)"


CRAWL_PAGES = Metric(
    "offpeak.crawl.pages.{site}.{region}", COUNTER, "offpeak_crawl_pages_total",
    "pages fetched from the site: each page's last answer, an error page's included (its "
    "earlier tries count as retries); robots.txt not counted",
)  # fmt: skip
CRAWL_ITEMS = Metric(
    "offpeak.crawl.items.{site}.{region}", COUNTER, "offpeak_crawl_items_total",
    "items scraped (lines of the crawl's feed), whether the crawl was then published or not",
)  # fmt: skip
CRAWL_HTTP_ERRORS = Metric(
    "offpeak.crawl.http_errors.{site}.{region}.{status}", COUNTER,
    "offpeak_crawl_http_errors_total",
    "responses with an HTTP error, by status, as quality.max_http_errors counts them: "
    ">= 400 except 404, retried ones included, throttling (a Retry-After waited out) not",
    label="status",
)  # fmt: skip
CRAWL_THROTTLED = Metric(
    "offpeak.crawl.throttled.{site}.{region}.{status}", COUNTER, "offpeak_crawl_throttled_total",
    "429 and 503 answers whose Retry-After was waited out and the request retried, by status",
    label="status",
)  # fmt: skip
CRAWL_RETRIES = Metric(
    "offpeak.crawl.retries.{site}.{region}", COUNTER, "offpeak_crawl_retries_total",
    "requests retried after an error (Scrapy's retry/count)",
)  # fmt: skip
CRAWL_BYTES = Metric(
    "offpeak.crawl.bytes.{site}.{region}", COUNTER, "offpeak_crawl_bytes_total",
    "bytes downloaded, headers included (Scrapy's downloader/response_bytes)",
)  # fmt: skip
CRAWL_DURATION = Metric(
    "offpeak.crawl.duration.{site}.{region}", TIMER, "offpeak_crawl_duration_seconds",
    "wall time of the crawl subprocess (a StatsD timing in ms; a histogram in seconds)",
)  # fmt: skip
CRAWL_RUNS = Metric(
    "offpeak.crawl.runs.{site}.{region}.{outcome}", COUNTER, "offpeak_crawl_runs_total",
    "crawl tries by outcome (a try that is retried counts too)",
    label="outcome", values=("complete", "partial", "failed"),
)  # fmt: skip
TRANSFORM_RECORDS = Metric(
    "offpeak.transform.records.{site}.{region}", COUNTER, "offpeak_transform_records_total",
    "records read from the raw feed",
)  # fmt: skip
TRANSFORM_REJECTED = Metric(
    "offpeak.transform.rejected.{site}.{region}", COUNTER, "offpeak_transform_rejected_total",
    "records rejected, each with its reason in the rejects file (also when too many were "
    "rejected and the transform failed)",
)  # fmt: skip
TRANSFORM_RUNS = Metric(
    "offpeak.transform.runs.{site}.{region}.{outcome}", COUNTER, "offpeak_transform_runs_total",
    "transform tries by outcome",
    label="outcome", values=("succeeded", "failed"),
)  # fmt: skip
LOAD_ROWS = Metric(
    "offpeak.load.rows.{site}.{region}.{change}", COUNTER, "offpeak_load_rows_total",
    "rows of the partition by what the load did to them",
    label="change", values=("inserted", "updated", "deleted", "unchanged"),
)  # fmt: skip
LOAD_RUNS = Metric(
    "offpeak.load.runs.{site}.{region}.{outcome}", COUNTER, "offpeak_load_runs_total",
    "load tries by outcome: complete, partial (nothing deleted) or failed (a failed quality "
    "check or any other error; the partition stays as it was)",
    label="outcome", values=("complete", "partial", "failed"),
)  # fmt: skip

# Every metric the pipeline sends: docs/operating.md "Metrics" lists them, and the statsd-exporter
# mapping must map each (tests/unit/test_statsd_mapping.py).
METRICS = (
    CRAWL_PAGES, CRAWL_ITEMS, CRAWL_HTTP_ERRORS, CRAWL_THROTTLED, CRAWL_RETRIES, CRAWL_BYTES,
    CRAWL_DURATION, CRAWL_RUNS, TRANSFORM_RECORDS, TRANSFORM_REJECTED, TRANSFORM_RUNS,
    LOAD_ROWS, LOAD_RUNS,
)  # fmt: skip

# (metric, label value or None, value): one StatsD line.
Point = tuple[Metric, object, float]


@dataclass(frozen=True)
class CrawlNumbers:
    """What one crawl did: pages of the site, items, HTTP errors and throttled answers by
    status, retries, response bytes and the subprocess's wall time."""

    pages: int
    items: int
    http_errors: Mapping[int, int]
    throttled: Mapping[int, int]
    retries: int
    response_bytes: int
    seconds: float


def crawled(site: str, region: str, crawl: CrawlNumbers) -> None:
    """What one crawl did, sent whatever its outcome (a failed crawl's errors most of all)."""
    _send(
        site,
        region,
        lambda: [
            (CRAWL_PAGES, None, crawl.pages),
            (CRAWL_ITEMS, None, crawl.items),
            *((CRAWL_HTTP_ERRORS, status, n) for status, n in sorted(crawl.http_errors.items())),
            *((CRAWL_THROTTLED, status, n) for status, n in sorted(crawl.throttled.items())),
            (CRAWL_RETRIES, None, crawl.retries),
            (CRAWL_BYTES, None, crawl.response_bytes),
            (CRAWL_DURATION, None, crawl.seconds * 1000),
        ],
    )


def crawl_finished(site: str, region: str, outcome: str) -> None:
    """One crawl try ended: complete, partial or failed."""
    _send(site, region, lambda: [(CRAWL_RUNS, outcome, 1)])


def transformed(site: str, region: str, counts: Mapping[str, int] | None, *, ok: bool) -> None:
    """One transform try ended; ``counts`` (records, rejected) when it got as far as counting."""

    def points() -> list[Point]:
        outcome: list[Point] = [(TRANSFORM_RUNS, "succeeded" if ok else "failed", 1)]
        if not counts:
            return outcome
        records, rejected = counts["records"], counts["rejected"]
        return [(TRANSFORM_RECORDS, None, records), (TRANSFORM_REJECTED, None, rejected), *outcome]

    _send(site, region, points)


def loaded(site: str, region: str, result: Mapping[str, object]) -> None:
    """A load committed: its row changes, and whether it was complete."""
    _send(
        site,
        region,
        lambda: [
            *((LOAD_ROWS, change, result[f"rows_{change}"]) for change in LOAD_ROWS.values),
            (LOAD_RUNS, "complete" if result["complete"] else "partial", 1),
        ],
    )


def load_failed(site: str, region: str) -> None:
    """A load try failed (and was rolled back)."""
    _send(site, region, lambda: [(LOAD_RUNS, "failed", 1)])


def _send(site: str, region: str, points: Callable[[], Iterable[Point]]) -> None:
    """Send ``points`` through Airflow's metrics layer (airflow.sdk.observability.stats, set up
    from [metrics] in every Airflow process); any error is logged, never raised."""
    try:
        from airflow.sdk.observability import stats

        for metric, label, value in points():
            name = metric.format(site, region, label)
            if metric.kind == TIMER:
                stats.timing(name, float(value))
            else:
                stats.incr(name, int(value))
    except Exception as exc:
        log.warning("Metrics of site %s region %s not sent: %s", _shown(site), _shown(region), exc)
