"""What the crawl subprocess and ScrapeOperator agree on: setting names, stat keys, redaction."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Settings the operator passes with -s (and environment variables it sets for the subprocess).
STATS_FILE = "OFFPEAK_STATS_FILE"
DEAD_LETTERS_FILE = "OFFPEAK_DEAD_LETTERS_FILE"
COVERAGE_FIELDS = "OFFPEAK_COVERAGE_FIELDS"
ALLOWED_HOSTS = "OFFPEAK_ALLOWED_HOSTS"
MAX_RETRY_AFTER = "OFFPEAK_MAX_RETRY_AFTER"
MAX_RETRY_AFTER_TIMES = "OFFPEAK_MAX_RETRY_AFTER_TIMES"
API_KEY_ENV = "OFFPEAK_API_KEY"  # the site's secret: environment only, never argv
PARENT_PID_ENV = "OFFPEAK_PARENT_PID"
# The site's proxy (proxy_conn_id): its URL with credentials in the environment only; its name
# (host:port and connection, no secret) as a setting, and on each request it carries.
PROXY_URL_ENV = "OFFPEAK_PROXY_URL"
PROXY_NAME = "OFFPEAK_PROXY_NAME"
PROXY_META = "offpeak_proxy"
# A rendered site's resource types the browser does not load (offpeak.scraping.browser).
BROWSER_BLOCK = "OFFPEAK_BROWSER_BLOCK"
# The site config as the operator validated it (JSON), so the crawl neither re-reads nor
# re-validates the YAML (offpeak.scraping.siteconfig).
SITE_CONFIG_ENV = "OFFPEAK_SITE_CONFIG"

# The pages a crawl keeps for a later try (offpeak.scraping.pages, offpeak.crawl.resume): one
# file each, and a journal the crawl appends each new page's file name to, a line each.
PAGE_SUFFIX = ".page"
PAGE_JOURNAL = "journal.txt"
# Pages read from an earlier try's state instead of being fetched (Scrapy's httpcache hits).
RESUMED_PAGES = "httpcache/hit"

# Stats the spiders and middlewares write; the operator and the quality checks read them.
UNREADABLE_PAGES = "offpeak/unreadable_pages"
# data_file: the folder of the day's kept downloads (offpeak.scraping.files.Downloads), and
# what became of each start URL: downloaded, or not modified (the kept copy read); rows of
# other dates than the run's (data_file.date_field) not loaded.
DOWNLOADS_DIR = "OFFPEAK_DOWNLOADS_DIR"
FILE_DOWNLOADED = "offpeak/file/downloaded"
FILE_NOT_MODIFIED = "offpeak/file/not_modified"
FILE_OTHER_DATES = "offpeak/file/other_dates"
DEAD_LETTERS = "offpeak/dead_letters"
# offpeak/incomplete/<cause>: each way a crawl fell short of "every page fetched and read whole".
INCOMPLETE_PREFIX = "offpeak/incomplete/"
# offpeak/throttled/<status>: 429/503 answers with Retry-After that were waited out and retried.
THROTTLED_PREFIX = "offpeak/throttled/"
CHARSET_RECOVERED = "offpeak/charset_recovered"
# Links to a page the crawl had already requested, dropped by Scrapy's duplicate filter: the
# page is read once, nothing lost (offpeak.scraping.extensions.dropped), so counted, not a dead
# letter.
DUPLICATE_REQUESTS = "offpeak/duplicate_requests"
# Table rows that are not data (html_table.skip_rows / skip_text, or no field found in them).
ROWS_SKIPPED = "offpeak/rows_skipped"
# The last next-page link a page gave (its stored URL), for the preview.
NEXT_PAGE = "offpeak/next_page"
# json_api pages not fetched because pagination.max_pages was reached with on_max_pages:
# complete (an expected cap, not a dead letter).
PAGINATION_CAPPED = "offpeak/pagination/capped"
RETRY_AFTER_ASKED = "offpeak/retry_after_asked_seconds"
RETRY_NOT_BEFORE = "offpeak/retry_not_before"
FINISH_RETRY_AFTER = "retry_after_exceeds_cap"
# offpeak/field/<name>: the scraped items in which the field has a value (FieldCoverage);
# quality.min_field_coverage is checked on them.
FIELD_PREFIX = "offpeak/field/"
# Scrapy's downloader/response_status_count/<status>.
STATUS_PREFIX = "downloader/response_status_count/"
# A missing robots.txt or a page past the last one is a normal answer, not a site error.
HTTP_IGNORED = frozenset({404})
# Scrapy's stats the pointer and the metrics read: responses (robots.txt's among them, counted
# apart too), bytes downloaded, requests retried.
RESPONSES = "response_received_count"
ROBOTS_RESPONSES = "robotstxt/response_count"
RESPONSE_BYTES = "downloader/response_bytes"
RETRIES = "retry/count"


def incomplete_causes(stats: dict) -> dict[str, int]:
    """``{cause: count}`` of the ways the crawl was incomplete, from its stats."""
    return {
        key.removeprefix(INCOMPLETE_PREFIX): int(n)
        for key, n in sorted(stats.items())
        if key.startswith(INCOMPLETE_PREFIX) and n
    }


def site_pages(stats: dict) -> int:
    """The pages fetched from the site: each page's last answer (an error page's too; tries the
    retry middleware repeated are not counted), robots.txt's aside."""
    return int(stats.get(RESPONSES, 0)) - int(stats.get(ROBOTS_RESPONSES, 0))


def by_status(stats: dict, prefix: str) -> dict[int, int]:
    """``{status: count}`` from the stats ``<prefix><status>``, sorted by status: Scrapy's
    ``downloader/response_status_count/``, or THROTTLED_PREFIX (429/503 answers whose
    Retry-After was waited out: throttling, not errors)."""
    counts = {
        int(key.removeprefix(prefix)): int(n)
        for key, n in stats.items()
        if key.startswith(prefix) and key.removeprefix(prefix).isdigit()
    }
    return dict(sorted(counts.items()))


def http_errors(stats: dict) -> dict[int, int]:
    """``{status: responses}`` for statuses >= 400 other than 404, from Scrapy's stats. A 429
    or 503 with Retry-After that was waited out is throttling, not an error: not counted."""
    waited = by_status(stats, THROTTLED_PREFIX)
    errors = {c: n - waited.get(c, 0) for c, n in by_status(stats, STATUS_PREFIX).items()}
    return {c: n for c, n in errors.items() if c >= 400 and c not in HTTP_IGNORED and n > 0}


@lru_cache(maxsize=8)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    """Every spelling of ``secret`` in a URL or a log line: each character as is or
    percent-encoded (either case of hex digits), a space also as ``+``."""
    parts = []
    for char in secret:
        encoded = "".join(f"%{b:02x}" for b in char.encode("utf-8"))
        either_case = "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in encoded)
        options = [re.escape(char), either_case, *([r"\+"] if char == " " else [])]
        parts.append(f"(?:{'|'.join(options)})")
    return re.compile("".join(parts))


def redact(text: str, secret: str | None) -> str:
    """``text`` with every spelling of ``secret`` replaced by ``***``."""
    if not secret:
        return text
    return _secret_pattern(secret).sub("***", text)


def strip_secret(url: str, secret: str | None) -> str:
    """The URL to store: query parameters that carry the secret are removed, and any other
    appearance of it (a path segment) is replaced by ``***``."""
    if not secret or not url:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if v != secret]
    kept = urlencode(query) if len(query) != len(parse_qsl(parts.query, True)) else parts.query
    return redact(urlunsplit(parts._replace(query=kept)), secret)
