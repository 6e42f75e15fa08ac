"""One crawl: a CrawlRequest in, a CrawlResult out; ScrapeOperator and the preview both use it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offpeak.crawl import contract, output, process, spec, verdict
from offpeak.crawl.process import WINDOW_GRACE_SECONDS, CrawlProcess

if TYPE_CHECKING:
    import subprocess

    from offpeak.config import Site
    from offpeak.connections import Proxy, SiteConnection
    from offpeak.crawl.spec import CrawlSample
    from offpeak.crawl.verdict import Decision, Finished
    from offpeak.crawl.window import WindowBudget
    from offpeak.partition import Partition


@dataclass(frozen=True)
class CrawlRequest:
    """What one crawl is asked for: the site and the partition (region, trading date, run),
    where the site is (``base_url``, and the API key its start URLs may need: never in argv or
    a repr), the run's sample (``max_pages``, ``start_urls``), the window's budget when
    that limits it, and the folder where the crawl keeps its pages for a later try
    (``pages``: offpeak.crawl.resume; none kept when None)."""

    site: Site
    partition: Partition
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    sample: CrawlSample | None = None
    window: WindowBudget | None = None
    pages: Path | None = None
    downloads: Path | None = None  # data_file: the day's kept downloads (crawl.downloads)
    proxy: Proxy | None = field(default=None, repr=False)

    @classmethod
    def at(
        cls, connection: SiteConnection, site: Site, partition: Partition, **kwargs: Any
    ) -> CrawlRequest:
        """The request for the site behind ``connection`` (offpeak.connections)."""
        return cls(site, partition, connection.base_url, connection.api_key, **kwargs)

    @property
    def timeout(self) -> float | None:
        return self.window.seconds if self.window is not None else None

    def argv(self, feed: Path, stats: Path) -> list[str]:
        return process.scrapy_argv(
            self.site.kind,
            spec.spider_args(self.site, self.partition, self.base_url, self.sample),
            {
                **spec.scrapy_settings(
                    self.site, feed, stats, self.timeout, self.base_url, self.sample
                ),
                **(spec.keep_pages(self.pages) if self.pages is not None else {}),
                **(spec.keep_downloads(self.downloads) if self.downloads is not None else {}),
                **spec.browser_settings(self.site),
                **({contract.PROXY_NAME: self.proxy.name} if self.proxy else {}),
            },
        )

    def env(self) -> dict[str, str]:
        proxy = {contract.PROXY_URL_ENV: self.proxy.url} if self.proxy else {}
        return process.scrapy_env(self.api_key, {**spec.crawl_env(self.site), **proxy})

    @property
    def secrets(self) -> tuple[str, ...]:
        """What no log line may show: the site's API key, its proxy's password."""
        found = (self.api_key, self.proxy.password if self.proxy else None)
        return tuple(s for s in found if s)


@dataclass(frozen=True)
class CrawlResult:
    """What a finished crawl left in its work dir, read back (``finished``: how it ended;
    ``feed``: its feed file), and the verdict on it (offpeak.crawl.verdict.decide): publish it
    whole, publish it as partial, or fail."""

    request: CrawlRequest
    files: output.CrawlFiles
    finished: Finished
    feed: output.FeedSummary
    seconds: float
    decision: Decision

    @property
    def returncode(self) -> int:
        return self.finished.returncode

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.finished.stats)

    @property
    def dead_letters(self) -> list[dict[str, Any]]:
        return list(self.finished.dead_letters)

    @property
    def stopped_at_window_end(self) -> bool:
        return self.finished.stopped_at_window_end


class Crawler:
    """Runs crawls in a ``scrapy crawl`` subprocess, one at a time; ``stop`` ends the running
    one (a task's on_kill). ``log`` receives the crawl's log lines."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger("offpeak.crawl")
        self.process: CrawlProcess | None = None
        self.stopped = False  # stop() was called: the crawl did not end by itself

    def run(self, request: CrawlRequest, workdir: Path) -> CrawlResult:
        """Crawl into ``workdir`` (offpeak.crawl.output.CrawlFiles) and judge the outcome."""
        files = output.CrawlFiles(workdir)
        started = time.monotonic()
        returncode = self.run_process(request, files.feed, files.stats, workdir)
        seconds = time.monotonic() - started
        stats = output.read_stats(files.stats)
        letters = output.read_dead_letters(files.dead_letters)
        feed = output.count_and_hash(files.feed)
        finished = verdict.Finished(
            stats, returncode, feed.items, self.stopped_at_window_end, letters
        )
        decision = verdict.decide(
            request.site, request.partition, finished, window=request.window,
            sample=request.sample,
        )  # fmt: skip
        return CrawlResult(request, files, finished, feed, seconds, decision)

    def run_process(self, request: CrawlRequest, feed: Path, stats: Path, cwd: Path | str) -> int:
        """Only the subprocess: ``scrapy crawl`` to its end (or the window's), its exit code."""
        self.process = CrawlProcess(log=self.log, secret=request.secrets)
        return self.process.run(
            request.argv(feed, stats),
            env=request.env(),
            cwd=str(cwd),
            window_seconds=request.timeout,
            grace=WINDOW_GRACE_SECONDS,  # looked up here, so a test can shorten it
        )

    @property
    def proc(self) -> subprocess.Popen[str] | None:
        return self.process.proc if self.process is not None else None

    @property
    def stopped_at_window_end(self) -> bool:
        return self.process is not None and self.process.stopped_at_window_end

    def stop(self) -> None:
        self.stopped = True
        if self.process is not None:
            self.process.stop()
