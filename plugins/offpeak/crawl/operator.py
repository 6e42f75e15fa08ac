"""ScrapeOperator: one crawl of a site for one region and trading date, in a subprocess."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator

from offpeak import connections, metrics, params, retries, settings
from offpeak.config import Site, get_site
from offpeak.crawl import breaker, contract, output, resume
from offpeak.crawl.downloads import DayDownloads
from offpeak.crawl.spec import CrawlSample
from offpeak.crawl.window import window_budget
from offpeak.partition import Partition
from offpeak.pipeline import quality, storage
from offpeak.pipeline.quality import QualityCheckFailed
from offpeak.schedule.tradingtime import RegionClock

if TYPE_CHECKING:
    from airflow.sdk import Context

    from offpeak.crawl.runner import Crawler, CrawlRequest, CrawlResult
    from offpeak.crawl.verdict import Decision


class CrawlFailed(Exception):
    """The crawl did not finish cleanly; the message says how and where the log is."""


class ScrapeOperator(BaseOperator):
    """
    Crawl one site for one region and trading date and publish the JSON Lines feed.

    The crawl runs as ``scrapy crawl <kind>`` in a subprocess (a Twisted reactor cannot be
    restarted inside a long-lived worker). Its log streams into the task log; the feed is
    written to a temporary file and published atomically under the data root.

    Window guard: outside the region's off-peak window the task defers (no worker slot is
    held; the triggerer wakes it) until the window opens, unless ``dag_run.conf`` says
    ``ignore_window: true`` or ``OFFPEAK_IGNORE_WINDOWS`` is set. Inside the window the
    crawl's time budget is the rest of the window; a crawl stopped by the window's end fails
    the task, or with ``quality.on_window_end: partial`` is published flagged incomplete.

    :param site: site name, the stem of ``include/config/sites/<site>.yaml`` (templated)
    :param region: region name from ``regions.yaml`` (templated)
    :param trading_date: ``YYYY-MM-DD`` override; by default it comes from the run (templated)
    """

    template_fields: Sequence[str] = ("site", "region", "trading_date")
    ui_color = "#e8f4d9"

    def __init__(
        self, *, site: str, region: str, trading_date: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.site = site
        self.region = region
        self.trading_date = trading_date

    @cached_property
    def site_config(self) -> tuple[Site, Any]:
        site, regions = get_site(self.site)
        return site, regions[self.region]

    def resolve_trading_date(self, context: Context) -> date:
        if self.trading_date:
            return date.fromisoformat(self.trading_date)
        return params.trading_date(self.site_config[1], context)

    def execute(self, context: Context) -> dict[str, Any]:
        # A broken config or a date that is no trading day fails at once (offpeak.retries); a
        # crawl's failures, its checks on the site's answers included, are retried.
        with retries.fail_fast():
            params.check_conf(context)  # a key no Param knows: refused, not ignored
            site, region = self.site_config
            trading_date = self.resolve_trading_date(context)
        breaker.gate(site, self.region, context, self.log)  # skips the run while it is open
        if params.ignore_window(context) or settings.ignore_windows():
            self.log.info("Window guard off for this run: crawling now")
            return self.crawl(context, trading_date, window_closes=None)
        clock = RegionClock.of(region)
        now = datetime.now(tz=UTC)
        window = clock.current_window(now)
        if window is None:
            self.wait_for_window(clock, now)
        return self.crawl(context, trading_date, window_closes=window[1])

    def execute_in_window(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resumed by the triggerer when the window opens: check again, then crawl."""
        return self.execute(context)

    def wait_for_window(self, clock: Any, now: datetime) -> NoReturn:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        opens = clock.next_window_open(now)
        self.log.info(
            "Outside the %s off-peak window (%s %s): deferring until it opens at %s "
            "(%s local); trigger with {\"ignore_window\": true} to crawl now",
            clock.name, clock.window_text(), clock.timezone, opens.isoformat(),
            opens.astimezone(clock.tz).strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
        self.defer(
            trigger=DateTimeTrigger(moment=opens),
            method_name="execute_in_window",
            timeout=opens - now + timedelta(hours=1),
        )

    def crawl(
        self, context: Context, trading_date: date, window_closes: datetime | None
    ) -> dict[str, Any]:
        """One crawl, recorded by the site's circuit breaker (a deferral is not an outcome)."""
        from airflow.sdk.exceptions import TaskDeferred

        site = self.site_config[0]
        try:
            pointer = self._crawl(context, trading_date, window_closes)
        except TaskDeferred:
            raise
        except Exception as exc:
            breaker.record(site, self.region, ok=False, reason=_first_line(exc), log=self.log)
            metrics.crawl_finished(site.name, self.region, "failed")
            raise
        breaker.record(site, self.region, ok=True, log=self.log)
        outcome = "complete" if pointer["complete"] else "partial"
        metrics.crawl_finished(site.name, self.region, outcome)
        return pointer

    def fail_after_retry_after(
        self, context: Context, event: Any = None, message: str = ""
    ) -> NoReturn:
        """Resumed once the time a throttling site asked for has passed: fail this try, so the
        task's retry starts no earlier than the site allows."""
        breaker.record(self.site_config[0], self.region, ok=False, reason=message, log=self.log)
        metrics.crawl_finished(self.site_config[0].name, self.region, "failed")
        raise CrawlFailed(message)

    def _crawl(
        self, context: Context, trading_date: date, window_closes: datetime | None
    ) -> dict[str, Any]:
        """Crawl into a work dir (offpeak.crawl.runner), then publish or fail."""
        site, region = self.site_config
        started = datetime.now(tz=UTC)
        budget = window_budget(
            site.politeness.closespider_timeout, window_closes, region.timezone, started
        )
        if budget is not None:
            self.log.info(
                "The window closes at %s: the crawl stops after %.0f s",
                budget.closes, budget.seconds,
            )  # fmt: skip
        conn = connections.site_connection(site.base_url_conn_id)
        part = Partition(site.name, self.region, trading_date, context["run_id"])
        dest = storage.partition("raw", part)
        dead_dest = storage.dead_letters_path(dest)
        self.log.info(
            "Crawling site %s (%s) region %s trading date %s from %s into %s",
            site.name, site.kind, self.region, trading_date, conn.base_url, dest,
        )  # fmt: skip
        proxy = connections.proxy_connection(site.proxy_conn_id) if site.proxy_conn_id else None
        if proxy is not None:
            self.log.info("Every request of the crawl goes through %s", proxy.name)
        sample = CrawlSample.from_context(site, context)
        if sample.partial:
            self.log.info("Partial crawl requested: %s", sample)
        with storage.crawl_workdir() as tmp:
            pages = tmp / "pages" if site.resume else None
            # A data_file site's downloads of the day, for conditional requests (crawl.downloads).
            kept = None
            if site.kind == "data_file":
                kept = DayDownloads(site.name, tmp / "downloads", log=self.log)
                kept.restore()
            # Imported here, not at the top: every task start parses this module (docs/scaling.md).
            from offpeak.crawl.runner import CrawlRequest

            request = CrawlRequest.at(
                conn, site, part, sample=sample, window=budget, pages=pages, proxy=proxy,
                downloads=kept.local if kept else None,
            )  # fmt: skip
            state = self.crawl_state(request, started, context) if pages else None
            with state.syncing(pages) if state else contextlib.nullcontext():
                result = self.crawler.run(request, tmp)
            if kept is not None:
                kept.keep()
            try:
                self.judge_and_publish(context, result, dest, dead_dest)
            finally:
                if state is not None and not self.crawler.stopped:
                    state.discard()  # this try ended by itself: a retry starts afresh
        pointer = output.pointer(
            result, uri=str(dest), dead_letters_uri=str(dead_dest), started=started
        )
        self.log.info("Crawl published: %s", pointer)
        return pointer

    def judge_and_publish(
        self, context: Context, result: CrawlResult, dest: Any, dead_dest: Any
    ) -> None:
        """Publish the crawl's dead letters, then fail (the verdict's failure) or publish its
        feed, whole or partial."""
        self.send_metrics(result.stats, result.feed.items, result.seconds)
        decision, letters = result.decision, result.dead_letters
        if letters:
            self.log.warning("%d dead letter(s), listed in %s:", len(letters), dead_dest)
            for letter in letters:
                self.log.warning("  dead letter: %s", letter["reason"])
            storage.publish(result.files.dead_letters, dead_dest)
        quality.log_checks(decision.checks, self.log)
        if decision.outcome == "failed":
            self.fail(context, decision)
        if decision.outcome == "partial":
            self.log.warning(
                "The crawl of %s is partial, so its load will add and update rows but delete "
                "none: %s", decision.where, "; ".join(decision.reasons),
            )  # fmt: skip
        storage.publish(result.files.feed, dest)

    def crawl_state(
        self, request: CrawlRequest, now: datetime, context: Context
    ) -> resume.CrawlState:
        """The run's kept pages on the data root (offpeak.crawl.resume), restored into
        ``request.pages`` when an earlier try of this window and config left them."""
        part, region = request.partition, self.site_config[1]
        opened = RegionClock.of(region).last_window_open(now)
        folder = storage.crawl_state(part)
        resume.CrawlState.sweep(folder.parent.parent, self.log)
        state = resume.CrawlState(folder, resume.config_version(request), opened, self.log)
        state.restore(request.pages, context["ti"].try_number)
        return state

    def send_metrics(self, stats: dict[str, Any], items: int, seconds: float) -> None:
        """The crawl's numbers (offpeak.metrics), whatever its outcome: before it is judged."""
        numbers = metrics.CrawlNumbers(
            pages=contract.site_pages(stats), items=items,
            http_errors=contract.http_errors(stats),
            throttled=contract.by_status(stats, contract.THROTTLED_PREFIX),
            retries=int(stats.get(contract.RETRIES, 0)),
            response_bytes=int(stats.get(contract.RESPONSE_BYTES, 0)), seconds=seconds,
        )  # fmt: skip
        metrics.crawled(self.site_config[0].name, self.region, numbers)

    def fail(self, context: Context, decision: Decision) -> NoReturn:
        """Raise the decision's failure; a site's Retry-After is waited out first (deferred)."""
        if decision.failed_checks:
            raise QualityCheckFailed(decision.message)
        if decision.retry_not_before is not None:
            self.wait_out_retry_after(context, decision.retry_not_before, decision.retry_message)
        raise CrawlFailed(decision.message)

    def wait_out_retry_after(self, context: Context, until: datetime, message: str) -> None:
        """A site that asked for a longer pause than the cap: when the task has a retry left,
        wait (deferred, no worker slot held) until the site's time, then fail this try."""
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        ti = context["ti"]
        if ti.try_number > self.retries or until <= datetime.now(tz=UTC):
            return
        message = (
            f"{message}; this try ends at {until.isoformat(timespec='seconds')}, when the site "
            "allows, and the task's retry follows"
        )
        self.log.warning("%s", message)
        self.defer(
            trigger=DateTimeTrigger(moment=until),
            method_name="fail_after_retry_after",
            kwargs={"message": message},
        )

    def run_crawl(self, request: CrawlRequest, feed: Path, stats_file: Path, cwd: str) -> int:
        """Only ``scrapy crawl`` for ``request``, to its end (the runner's subprocess step, for
        tests and benchmarks that read its files themselves); ``on_kill`` stops it."""
        return self.crawler.run_process(request, feed, stats_file, cwd)

    @cached_property
    def crawler(self) -> Crawler:
        from offpeak.crawl.runner import Crawler

        return Crawler(log=self.log)

    @property
    def _proc(self) -> subprocess.Popen[str] | None:
        """The running (or last) crawl subprocess."""
        return self.crawler.proc

    @property
    def _stopped_at_window_end(self) -> bool:
        return self.crawler.stopped_at_window_end

    def on_kill(self) -> None:
        """SIGTERM asks Scrapy to close gracefully; a second one forces it; then SIGKILL."""
        self.crawler.stop()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
