"""What one crawl asks Scrapy for: spider arguments and settings from the site, run and sample."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offpeak.crawl import contract
from offpeak.crawl.output import dead_letters_beside
from offpeak.params import run_param

if TYPE_CHECKING:
    from offpeak.config import Site
    from offpeak.partition import Partition


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
    sample: CrawlSample | None = None,
) -> dict[str, Any]:
    """The per-run Scrapy settings: the site's politeness section plus where to write, and
    the sample's (``CLOSESPIDER_PAGECOUNT``) on top.

    ``timeout`` (seconds) overrides the site's ``closespider_timeout``: the time left in the
    off-peak window when that is shorter.
    """
    p = site.politeness
    settings = {
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
        contract.DEAD_LETTERS_FILE: str(dead_letters_beside(stats_path)),
        # Fields whose coverage the FieldCoverage extension counts (quality.min_field_coverage).
        contract.COVERAGE_FIELDS: ",".join(site.fields),
        contract.ALLOWED_HOSTS: ",".join(allowed_hosts(site, base_url)),
        contract.MAX_RETRY_AFTER: p.max_retry_after_seconds,
        contract.MAX_RETRY_AFTER_TIMES: p.max_retry_after_times,
    }
    return {**settings, **(sample.settings() if sample is not None else {})}


def keep_pages(folder: Path) -> dict[str, Any]:
    """Scrapy's HttpCacheMiddleware with our page files (offpeak.scraping.pages): every 2xx
    page kept in ``folder``, and the ones already there read instead of fetched."""
    return {
        "HTTPCACHE_ENABLED": True,
        "HTTPCACHE_DIR": str(folder),
        "HTTPCACHE_STORAGE": "offpeak.scraping.pages.PageFiles",
        "HTTPCACHE_POLICY": "offpeak.scraping.pages.KeepAnswered",
        "HTTPCACHE_EXPIRATION_SECS": 0,
    }


def keep_downloads(folder: Path) -> dict[str, Any]:
    """A data_file crawl's kept downloads of the day (offpeak.crawl.downloads)."""
    return {contract.DOWNLOADS_DIR: str(folder)}


BROWSER_HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"


def browser_settings(site: Site) -> dict[str, Any]:
    """scrapy-playwright for a site whose pages are rendered (``browser``): its download
    handler (which fetches a request plainly unless the spider asks for the browser), the
    cap on open pages, the resource types not loaded. The browser itself (Debian's chromium,
    the proxy) is set in offpeak.scraping.settings, from the environment."""
    b = site.browser
    if b is None:
        return {}
    return {
        "DOWNLOAD_HANDLERS": json.dumps({"http": BROWSER_HANDLER, "https": BROWSER_HANDLER}),
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": b.max_pages,
        "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": b.timeout_seconds * 1000,
        "PLAYWRIGHT_ABORT_REQUEST": "offpeak.scraping.browser.abort_request",
        contract.BROWSER_BLOCK: ",".join(b.block),
    }


def crawl_env(site: Site) -> dict[str, str]:
    """The environment that hands the validated site to the crawl (offpeak.scraping.siteconfig),
    so the crawl neither re-reads nor re-validates the YAML."""
    return {contract.SITE_CONFIG_ENV: site.model_dump_json()}


def spider_args(
    site: Site, partition: Partition, base_url: str, sample: CrawlSample | None = None
) -> dict[str, str]:
    """The spider's ``-a`` arguments: which site, region, day and base URL, and the sample."""
    args = {
        "site": site.name,
        "region": partition.region,
        "trading_date": partition.trading_date.isoformat(),
        "base_url": base_url,
    }
    return {**args, **(sample.spider_args() if sample is not None else {})}


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

    def spider_args(self) -> dict[str, str]:
        return {"start_urls": json.dumps(list(self.start_urls))} if self.start_urls else {}

    def settings(self) -> dict[str, Any]:
        return {"CLOSESPIDER_PAGECOUNT": self.max_pages} if self.max_pages is not None else {}

    def __str__(self) -> str:
        return f"max_pages={self.max_pages}, start_urls={list(self.start_urls) or 'all'}"
