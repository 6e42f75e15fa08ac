"""Scrapy settings shared by every crawl; per-site politeness is passed with ``-s`` on top."""

from __future__ import annotations

from offpeak.scraping.browser import launch_options
from offpeak.scraping.lifeline import die_with_parent
from offpeak.settings import progress_interval

# Read first thing by `scrapy crawl`: from here on the crawl cannot outlive its task.
die_with_parent()

BOT_NAME = "offpeak"
SPIDER_MODULES = ["offpeak.scraping.spiders"]
NEWSPIDER_MODULE = "offpeak.scraping.spiders"

# Politeness defaults; ScrapeOperator overrides them from the site's `politeness` section.
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 4
DOWNLOAD_DELAY = 0.0
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.1
AUTOTHROTTLE_TARGET_CONCURRENCY = 4.0
DOWNLOAD_MAXSIZE = 10 * 1024 * 1024
DOWNLOAD_TIMEOUT = 30
CLOSESPIDER_TIMEOUT = 1800
RETRY_TIMES = 2

TELNETCONSOLE_ENABLED = False
COOKIES_ENABLED = False
FEED_EXPORT_ENCODING = "utf-8"
FEED_STORE_EMPTY = True
# Progress lines in the task log (offpeak.scraping.extensions.progress) replace Scrapy's LogStats.
OFFPEAK_PROGRESS_INTERVAL = progress_interval()
LOG_LEVEL = "INFO"
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

EXTENSIONS = {
    "offpeak.scraping.extensions.dead_letters.DeadLetters": 400,
    "offpeak.scraping.extensions.stats_file.StatsFile": 500,
    "offpeak.scraping.extensions.progress.Progress": 510,
    # Names the requests Scrapy's duplicate filter drops (a redirect loop is a lost page).
    "offpeak.scraping.extensions.dropped.DroppedRequests": 520,
    "scrapy.extensions.logstats.LogStats": None,
}
# Last, so it counts the items that reach the feed.
ITEM_PIPELINES = {"offpeak.scraping.pipelines.FieldCoverage": 1000}
DOWNLOADER_MIDDLEWARES = {
    # Ours refuses and names off-site requests (Scrapy's filters them quietly, by domain).
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "offpeak.scraping.middlewares.OnSite": 50,
    # Just before Scrapy's HttpProxyMiddleware (750), which reads the proxy it sets.
    "offpeak.scraping.middlewares.ThroughProxy": 740,
    # Before RetryMiddleware (550) sees a 429/503, so Retry-After is waited out first.
    "offpeak.scraping.middlewares.RetryAfter": 560,
}
# A rendered site's browser (only such a site's crawl uses scrapy-playwright's handler):
# Debian's chromium, and the site's proxy from the environment.
PLAYWRIGHT_BROWSER_TYPE = "chromium"
PLAYWRIGHT_LAUNCH_OPTIONS = launch_options()
# A truncated transfer (fewer bytes than Content-Length) is an error, never a short page.
DOWNLOAD_FAIL_ON_DATALOSS = True
