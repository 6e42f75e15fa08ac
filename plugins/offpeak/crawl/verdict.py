"""How a crawl ended, judged from its exit code and stats: complete, partial or failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from offpeak.crawl import contract

if TYPE_CHECKING:
    from offpeak.config import Site

# What each incomplete cause means, in words for the task log and the failure message.
CAUSES = {
    "http_error": "requests failed with an HTTP error after their retries",
    "connection": "requests lost their connection after their retries",
    "timeout": "requests timed out after their retries",
    "download": "requests failed to download",
    "offsite": "requests to other hosts were refused",
    "robots": "requests were disallowed by robots.txt",
    "redirect_loop": "requests ended in a redirect loop",
    "too_large": "responses exceeded politeness.download_maxsize",
    "refused": "requests were refused",
    "retry_after": "requests were throttled for longer than politeness.max_retry_after_seconds",
    "truncated": "pages were cut short (no closing </body> or </html>)",
    "charset": "pages did not decode under their declared charset",
    "rows_unmatched": "pages had table rows after the last one the row selector matches",
    "unreadable_page": "pages had no rows or fields the selectors match",
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
