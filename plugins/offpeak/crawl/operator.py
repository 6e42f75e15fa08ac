"""ScrapeOperator: one crawl of a site for one region and trading date, in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from zoneinfo import ZoneInfo

from airflow.sdk import BaseOperator

from offpeak.config import Site
from offpeak.crawl import contract
from offpeak.crawl.contract import redact, secret_forms

if TYPE_CHECKING:
    from airflow.sdk import Context

PLUGINS_DIR = Path(__file__).resolve().parents[2]
# Stats copied into the returned pointer: small, and what an operator looks at first.
KEY_STATS = {
    "pages": "response_received_count",
    "requests": "downloader/request_count",
    "errors": "log_count/ERROR",
    "retries": "retry/count",
    "robots_forbidden": "robotstxt/forbidden",
    "unreadable_pages": contract.UNREADABLE_PAGES,
    "dead_letters": contract.DEAD_LETTERS,
    "elapsed_seconds": "elapsed_time_seconds",
}


# Scrapy's CLOSESPIDER_TIMEOUT waits for requests in flight; past this grace after the window's
# end the crawl is stopped the way on_kill stops it.
WINDOW_GRACE_SECONDS = 30.0


class CrawlFailed(Exception):
    """The crawl did not finish cleanly; the message says how and where the log is."""


def ignore_windows_everywhere() -> bool:
    """``OFFPEAK_IGNORE_WINDOWS=true``: a deployment without peak hours (`make run`'s demo)."""
    return os.environ.get("OFFPEAK_IGNORE_WINDOWS", "").lower() in ("1", "true", "yes")


def allowed_hosts(site: Site, base_url: str) -> list[str]:
    """The hosts a crawl of ``site`` may fetch from: its base URL's, plus
    ``politeness.allowed_hosts``."""
    from urllib.parse import urlsplit

    hosts = {(urlsplit(base_url).hostname or "").lower(), *site.politeness.allowed_hosts}
    return sorted(h for h in hosts if h)


def scrapy_settings(
    site: Site,
    feed_path: Path,
    stats_path: Path,
    timeout: float | None = None,
    base_url: str = "",
) -> dict[str, Any]:
    """The per-run Scrapy settings: the site's politeness section plus where to write.

    ``timeout`` (seconds) overrides the site's ``closespider_timeout``: the time left in the
    off-peak window when that is shorter.
    """
    p = site.politeness
    return {
        "ROBOTSTXT_OBEY": p.robotstxt_obey,
        "CONCURRENT_REQUESTS_PER_DOMAIN": p.concurrent_requests_per_domain,
        "DOWNLOAD_DELAY": p.download_delay,
        "AUTOTHROTTLE_ENABLED": p.autothrottle,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": p.autothrottle_target_concurrency,
        "DOWNLOAD_MAXSIZE": p.download_maxsize,
        "CLOSESPIDER_TIMEOUT": p.closespider_timeout if timeout is None else timeout,
        "USER_AGENT": p.user_agent,
        "FEEDS": json.dumps({feed_path.as_uri(): {"format": "jsonlines", "encoding": "utf8"}}),
        contract.STATS_FILE: str(stats_path),
        contract.DEAD_LETTERS_FILE: str(stats_path.with_name("dead_letters.jsonl")),
        # Fields whose coverage the FieldCoverage extension counts (quality.min_field_coverage).
        contract.COVERAGE_FIELDS: ",".join(site.fields),
        contract.ALLOWED_HOSTS: ",".join(allowed_hosts(site, base_url)),
        contract.MAX_RETRY_AFTER: p.max_retry_after_seconds,
        contract.MAX_RETRY_AFTER_TIMES: p.max_retry_after_times,
    }


def base_url_from_connection(conn) -> str:
    """``http[s]://host[:port][/path]`` from an Airflow HTTP connection (a site's base URL, the
    alerts webhook): its host when that is a whole URL (the JSON form
    ``{"conn_type": "http", "host": "https://hooks.slack.com/services/..."}``), else built
    from its parts. ``schema`` is the scheme when it is ``http``/``https``, else the path: the
    URI form ``https://host/path`` puts the path there."""
    host = (conn.host or "").strip().rstrip("/")
    if "://" in host:
        return host
    schema = (conn.schema or "").strip("/")
    if schema in ("http", "https"):
        scheme, path = schema, ""
    else:
        scheme = "https" if conn.conn_type == "https" else "http"
        path = f"/{schema}" if schema else ""
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{host}{port}{path}"


@dataclass(frozen=True)
class CrawlSample:
    """The run's ``max_pages`` and ``start_urls`` params: a partial crawl when either is set.

    A partial crawl is published with ``complete: false``, so its load only adds and updates
    rows and never deletes the keys it did not reach.
    """

    max_pages: int | None = None
    start_urls: tuple[str, ...] = ()

    @classmethod
    def from_context(cls, site: Site, context: Any) -> CrawlSample:
        from offpeak.params import run_param

        urls = tuple(run_param(context, "start_urls", None) or ())
        unknown = [u for u in urls if u not in site.start_urls]
        if unknown:
            raise ValueError(
                f"params.start_urls: {unknown} are not start URLs of site {site.name!r}; "
                f"it has {site.start_urls}"
            )
        if set(urls) == set(site.start_urls):
            urls = ()
        return cls(max_pages=run_param(context, "max_pages", None), start_urls=urls)

    @property
    def partial(self) -> bool:
        return self.max_pages is not None or bool(self.start_urls)

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        """Finish reasons that are success for this crawl, besides ``finished``."""
        return ("closespider_pagecount",) if self.max_pages is not None else ()

    def spider_args(self) -> list[str]:
        return ["-a", f"start_urls={json.dumps(list(self.start_urls))}"] if self.start_urls else []

    def settings(self) -> dict[str, Any]:
        return {"CLOSESPIDER_PAGECOUNT": self.max_pages} if self.max_pages is not None else {}

    def __str__(self) -> str:
        return f"max_pages={self.max_pages}, start_urls={list(self.start_urls) or 'all'}"


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
        self._proc: subprocess.Popen | None = None
        self._api_key: str | None = None
        self._stopped_at_window_end = False

    @cached_property
    def site_config(self) -> tuple[Site, Any]:
        from offpeak.config import get_site

        site, regions = get_site(self.site)
        return site, regions[self.region]

    def resolve_trading_date(self, context: Context) -> date:
        from offpeak.schedule.tradingtime import trading_date_from_context

        if self.trading_date:
            return date.fromisoformat(self.trading_date)
        return trading_date_from_context(self.site_config[1], context)

    def execute(self, context: Context) -> dict[str, Any]:
        from offpeak.crawl import breaker
        from offpeak.schedule.tradingtime import RegionClock, ignore_window

        site, region = self.site_config
        trading_date = self.resolve_trading_date(context)
        breaker.gate(site, self.region, context, self.log)  # skips the run while it is open
        if ignore_window(context) or ignore_windows_everywhere():
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

        from offpeak.crawl import breaker

        site = self.site_config[0]
        try:
            pointer = self._crawl(context, trading_date, window_closes)
        except TaskDeferred:
            raise
        except Exception as exc:
            breaker.record(site, self.region, ok=False, reason=_first_line(exc), log=self.log)
            raise
        breaker.record(site, self.region, ok=True, log=self.log)
        return pointer

    def fail_after_retry_after(
        self, context: Context, event: Any = None, message: str = ""
    ) -> NoReturn:
        """Resumed once the time a throttling site asked for has passed: fail this try, so the
        task's retry starts no earlier than the site allows."""
        from offpeak.crawl import breaker

        breaker.record(self.site_config[0], self.region, ok=False, reason=message, log=self.log)
        raise CrawlFailed(message)

    def _crawl(
        self, context: Context, trading_date: date, window_closes: datetime | None
    ) -> dict[str, Any]:
        from airflow.sdk import BaseHook

        from offpeak.crawl import verdict
        from offpeak.pipeline import quality, storage

        site, region = self.site_config
        started = datetime.now(tz=UTC)
        budget = None
        if window_closes is not None:
            left = (window_closes - started).total_seconds()
            if (
                site.politeness.closespider_timeout == 0
                or left < site.politeness.closespider_timeout
            ):
                budget = max(1.0, round(left, 1))
                self.log.info(
                    "The window closes at %s: the crawl stops after %.0f s", window_closes, budget
                )
        conn = BaseHook.get_connection(site.base_url_conn_id)
        # The connection's password is the site's API key, for start URLs with {api_key}: it
        # reaches Scrapy in its environment (never argv), is masked in every log line in each
        # spelling a URL gives it, and is stripped from every stored URL.
        self._api_key = conn.password or None
        if conn.password:
            from airflow.sdk.log import mask_secret

            for form in secret_forms(conn.password):
                mask_secret(form)
        base_url = base_url_from_connection(conn)
        dest = storage.partition(
            "raw", site.name, self.region, trading_date, storage.run_key(context["run_id"])
        )
        dead_dest = storage.dead_letters_path(dest)
        where = f"site {site.name!r} region {self.region!r} {trading_date}"
        self.log.info(
            "Crawling site %s (%s) region %s trading date %s from %s into %s",
            site.name, site.kind, self.region, trading_date, base_url, dest,
        )  # fmt: skip
        sample = CrawlSample.from_context(site, context)
        if sample.partial:
            self.log.info("Partial crawl requested: %s", sample)
        with storage.crawl_workdir() as tmp:
            feed, stats_file = tmp / "items.jsonl", tmp / "stats.json"
            dead_file = tmp / "dead_letters.jsonl"
            returncode = self.run_crawl(
                site, trading_date, base_url, feed, stats_file, str(tmp), timeout=budget,
                sample=sample,
            )  # fmt: skip
            stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
            letters = _read_dead_letters(dead_file)
            window_stop = None
            if budget is not None and (
                stats.get("finish_reason") == "closespider_timeout" or self._stopped_at_window_end
            ):
                closed = window_closes.astimezone(ZoneInfo(region.timezone))
                window_stop = (
                    f"the off-peak window closed at {closed:%H:%M:%S} {region.timezone} and "
                    f"stopped the crawl after {stats.get('response_received_count', 0)} pages"
                )
            judged = verdict.judge(site, stats, returncode, sample=sample, window_stop=window_stop)
            if letters:
                self.log.warning("%d dead letter(s), listed in %s:", len(letters), dead_dest)
                for letter in letters:
                    self.log.warning("  dead letter: %s", letter["reason"])
                storage.publish(dead_file, dead_dest)
            note = _dead_letter_note(letters)
            if judged.outcome == "partial":
                note = f"; the crawl was incomplete: {'; '.join(judged.reasons)}{note}"
            if judged.outcome == "failed":
                message = f"{where}: {'; '.join(judged.reasons)}{note}"
                if judged.retry_not_before is not None:
                    self.wait_out_retry_after(context, judged.retry_not_before, message)
                raise CrawlFailed(f"{message}; see the crawl log above")
            items, size, sha256 = _count_and_hash(feed)
            checks = quality.check_crawl(site, stats, items)
            quality.log_checks(checks, self.log)
            try:
                quality.raise_failures(checks, site, self.region, trading_date)
            except quality.QualityCheckFailed as failed:
                raise quality.QualityCheckFailed(f"{failed}{note}") from None
            if judged.outcome == "partial":
                self.log.warning(
                    "The crawl of %s is partial, so its load will add and update rows but delete "
                    "none: %s", where, "; ".join(judged.reasons),
                )  # fmt: skip
            storage.publish(feed, dest)
        pointer = {
            "uri": str(dest),
            "site": site.name,
            "region": self.region,
            "trading_date": trading_date.isoformat(),
            "items": items,
            "bytes": size,
            "sha256": sha256,
            "finish_reason": stats.get("finish_reason", "unknown"),
            "complete": judged.complete,
            "incomplete": contract.incomplete_causes(stats) or None,
            "dead_letters": len(letters),
            "crawl_started_at": started.isoformat(timespec="seconds"),
            "stats": {k: stats[v] for k, v in KEY_STATS.items() if v in stats},
            "checks": quality.summary(checks),
        }
        if letters:
            pointer["dead_letters_uri"] = str(dead_dest)
        self.log.info("Crawl published: %s", pointer)
        return pointer

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

    def run_crawl(
        self,
        site: Site,
        trading_date: date,
        base_url: str,
        feed: Path,
        stats_file: Path,
        cwd: str,
        timeout: float | None = None,
        sample: CrawlSample | None = None,
    ) -> int:
        cmd = [
            sys.executable, "-m", "scrapy", "crawl", site.kind,
            "-a", f"site={site.name}",
            "-a", f"region={self.region}",
            "-a", f"trading_date={trading_date.isoformat()}",
            "-a", f"base_url={base_url}",
        ]  # fmt: skip
        settings = scrapy_settings(site, feed, stats_file, timeout, base_url)
        if sample is not None:
            cmd += sample.spider_args()
            settings.update(sample.settings())
        for key, value in settings.items():
            cmd += ["-s", f"{key}={value}"]
        env = {
            **os.environ,
            "SCRAPY_SETTINGS_MODULE": "offpeak.scraping.settings",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(PLUGINS_DIR), os.environ.get("PYTHONPATH")])
            ),
            "PYTHONUNBUFFERED": "1",
            **({contract.API_KEY_ENV: self._api_key} if self._api_key else {}),
            # The crawl ties its life to this process (offpeak.scraping.lifeline).
            contract.PARENT_PID_ENV: str(os.getpid()),
        }
        self._proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # on_kill signals the whole group
        )
        watchdog = None
        if timeout is not None:
            watchdog = threading.Timer(timeout + WINDOW_GRACE_SECONDS, self._stop_at_window_end)
            watchdog.daemon = True
            watchdog.start()
        try:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                self.log.info("[scrapy] %s", redact(line.rstrip(), self._api_key))
            return self._proc.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _stop_at_window_end(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._stopped_at_window_end = True
        self.log.warning(
            "The crawl is still running %.0f s after its off-peak window closed: stopping it",
            WINDOW_GRACE_SECONDS,
        )
        self.on_kill()

    def on_kill(self) -> None:
        """SIGTERM asks Scrapy to close gracefully; a second one forces it; then SIGKILL."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.log.info("Stopping crawl (pid %s)", proc.pid)
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _read_dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _dead_letter_note(letters: list[dict[str, Any]], shown: int = 3) -> str:
    """``; dead letters: <reason>; <reason> (and N more)`` for a failure message."""
    if not letters:
        return ""
    reasons = "; ".join(letter["reason"] for letter in letters[:shown])
    more = f" (and {len(letters) - shown} more)" if len(letters) > shown else ""
    return f"; {len(letters)} dead letter(s): {reasons}{more}"


def _count_and_hash(path: Path) -> tuple[int, int, str]:
    digest, lines, size = hashlib.sha256(), 0, 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            lines += block.count(b"\n")
            size += len(block)
    return lines, size, digest.hexdigest()
