"""What to do with a finished crawl, from its stats and exit code: publish, partial or fail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from offpeak.crawl import contract
from offpeak.crawl.checks import check_crawl
from offpeak.pipeline import quality

if TYPE_CHECKING:
    from offpeak.config import Site
    from offpeak.crawl.window import WindowBudget
    from offpeak.partition import Partition

# What each incomplete cause means, in words for the task log and the failure message.
CAUSES = {
    "http_error": "requests failed with an HTTP error after their retries",
    "connection": "requests lost their connection after their retries",
    "timeout": "requests timed out after their retries",
    "download": "requests failed to download",
    "offsite": "requests to other hosts were refused",
    "robots": "requests were disallowed by robots.txt",
    "redirect_loop": "requests ended in a redirect loop",
    "columns_moved": "pages had a table header that does not match the site's columns",
    "too_large": "responses exceeded politeness.download_maxsize",
    "refused": "requests were refused",
    "retry_after": "requests were throttled for longer than politeness.max_retry_after_seconds",
    "truncated": "pages were cut short in transfer (the connection closed before the end of "
    "their body)",
    "charset": "pages did not decode under their declared charset",
    "rows_unmatched": "pages had table rows after the last one the row selector matches",
    "unreadable_page": "pages had no rows or fields the selectors match",
    "pagination_loop": "next pages pointed back to a page already requested (a pagination loop)",
    "max_pages": "page chains stopped at json_api.pagination.max_pages with more pages offered",
    "pagination": "pages gave pagination data that cannot be followed or ends the list early",
    "proxy": "requests failed at the site's proxy (down, unreachable, or it refused them)",
    "browser": "pages did not settle in the browser in time, or the browser failed",
    "zip_slip": "archives named members outside their folder (absolute, or through '..')",
    "xml_entity": "XML files declared entities (never expanded or fetched)",
}


@dataclass(frozen=True)
class Verdict:
    """``outcome`` is complete, partial or failed; ``reasons`` say why it is not complete;
    ``retry_not_before`` is when a site that asked to be left alone may be tried again."""

    outcome: str
    reasons: list[str] = field(default_factory=list)
    retry_not_before: datetime | None = None

    @property
    def complete(self) -> bool:
        return self.outcome == "complete"


def judge(
    site: Site,
    stats: dict[str, Any],
    returncode: int,
    *,
    sample: Any = None,
    window_stop: str | None = None,
) -> Verdict:
    """Judge a finished crawl.

    ``window_stop`` is the sentence saying the off-peak window closed on the crawl, when it
    did; ``sample`` the run's CrawlSample (max_pages / start_urls), when given. A crawl is
    complete only when it ended cleanly and every page it set out to fetch was fetched and
    read whole; anything less it still publishes is partial, so its load never deletes.
    """
    finish = stats.get("finish_reason", "unknown")
    if finish == contract.FINISH_RETRY_AFTER:
        until = stats.get(contract.RETRY_NOT_BEFORE)
        asked = stats.get(contract.RETRY_AFTER_ASKED)
        when = datetime.fromtimestamp(until, tz=UTC) if until else None
        return Verdict(
            "failed",
            [f"the site asked to wait {asked:,} s (Retry-After), above "
             f"politeness.max_retry_after_seconds {site.politeness.max_retry_after_seconds}"],
            when,
        )  # fmt: skip
    reasons: list[str] = []
    if window_stop is not None:
        if site.quality.on_window_end == "fail":
            why = f"{window_stop}; quality.on_window_end is 'fail', so nothing is published"
            return Verdict("failed", [why])
        reasons.append(f"{window_stop} (on_window_end: partial)")
    else:
        accepted = (*site.quality.finish_reasons, *(sample.finish_reasons if sample else ()))
        if returncode != 0 or finish not in accepted:
            return Verdict(
                "failed", [f"the crawl ended with exit code {returncode}, finish reason {finish!r}"]
            )
    if sample is not None and sample.partial:
        reasons.append(f"a sample was asked for ({sample})")
    for cause, count in contract.incomplete_causes(stats).items():
        reasons.append(f"{count} {CAUSES.get(cause, cause)}")
    return Verdict("partial" if reasons else "complete", reasons)


def window_stop(
    stats: Mapping[str, Any], window: WindowBudget | None, stopped_at_window_end: bool = False
) -> str | None:
    """The sentence saying the off-peak window closed on the crawl, or None when it did not.

    Only a window that limited the crawl (``window``: its budget was the time left) can have
    stopped it: by Scrapy's ``closespider_timeout``, or by the watchdog past the grace.
    """
    if window is None:
        return None
    if stats.get("finish_reason") != "closespider_timeout" and not stopped_at_window_end:
        return None
    closed = window.closes.astimezone(ZoneInfo(window.timezone))
    return (
        f"the off-peak window closed at {closed:%H:%M:%S} {window.timezone} and "
        f"stopped the crawl after {stats.get('response_received_count', 0)} pages"
    )


def dead_letter_note(letters: Sequence[Mapping[str, Any]], shown: int = 3) -> str:
    """``; dead letters: <reason>; <reason> (and N more)`` for a failure message."""
    if not letters:
        return ""
    reasons = "; ".join(letter["reason"] for letter in letters[:shown])
    more = f" (and {len(letters) - shown} more)" if len(letters) > shown else ""
    return f"; {len(letters)} dead letter(s): {reasons}{more}"


@dataclass(frozen=True)
class Decision:
    """What the operator does with a finished crawl.

    ``outcome`` is ``complete`` (publish), ``partial`` (publish with ``complete: false``, so the
    load deletes nothing) or ``failed`` (raise ``message``: CrawlFailed, or QualityCheckFailed
    when ``failed_checks``). ``checks`` are the quality checks run (none when the crawl itself
    failed). A crawl failed by a site's Retry-After may be retried from ``retry_not_before``;
    ``retry_message`` is then the failure without its pointer to the log.
    """

    outcome: str
    where: str
    reasons: list[str] = field(default_factory=list)
    checks: list[quality.Check] = field(default_factory=list)
    message: str | None = None
    failed_checks: bool = False
    retry_not_before: datetime | None = None
    retry_message: str = ""

    @property
    def complete(self) -> bool:
        return self.outcome == "complete"


@dataclass(frozen=True)
class Finished:
    """How a crawl ended, read back from its work dir: its stats, exit code, the number of
    lines in its feed (``items``), whether the watchdog stopped it at the window's end, and
    the pages it gave up on (``dead_letters``)."""

    stats: Mapping[str, Any]
    returncode: int
    items: int
    stopped_at_window_end: bool = False
    dead_letters: Sequence[Mapping[str, Any]] = ()


def decide(
    site: Site,
    partition: Partition,
    finished: Finished,
    *,
    window: WindowBudget | None = None,
    sample: Any = None,
) -> Decision:
    """Decide a finished crawl of ``site`` for ``partition`` (its region and trading date).

    ``window`` is the off-peak window's budget when that limited the crawl; ``sample`` the
    run's CrawlSample. First how the crawl ended (``judge``), then, for a crawl worth
    publishing, the quality checks.
    """
    stats = dict(finished.stats)
    region, trading_date = partition.region, partition.trading_date
    at = str(partition)
    judged = judge(
        site,
        stats,
        finished.returncode,
        sample=sample,
        window_stop=window_stop(stats, window, finished.stopped_at_window_end),
    )
    note = dead_letter_note(finished.dead_letters)
    if judged.outcome == "partial":
        note = f"; the crawl was incomplete: {'; '.join(judged.reasons)}{note}"
    if judged.outcome == "failed":
        message = f"{at}: {'; '.join(judged.reasons)}{note}"
        return Decision(
            "failed",
            at,
            judged.reasons,
            message=f"{message}; see the crawl log above",
            retry_not_before=judged.retry_not_before,
            retry_message=message,
        )
    checks = check_crawl(site, stats, finished.items)
    try:
        quality.raise_failures(checks, site, region, trading_date)
    except quality.QualityCheckFailed as failed:
        return Decision(
            "failed", at, judged.reasons, checks, message=f"{failed}{note}", failed_checks=True
        )
    return Decision(judged.outcome, at, judged.reasons, checks)
