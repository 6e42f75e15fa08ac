"""What a crawl leaves behind (stats, dead letters, feed), and the pointer to its published feed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offpeak.crawl import contract
from offpeak.pipeline import quality

if TYPE_CHECKING:
    from offpeak.crawl.runner import CrawlResult

# Stats copied into the returned pointer: small, and what an operator looks at first.
KEY_STATS = {
    "pages": contract.RESPONSES,
    "requests": "downloader/request_count",
    "response_bytes": contract.RESPONSE_BYTES,
    "errors": "log_count/ERROR",
    "retries": contract.RETRIES,
    "robots_forbidden": "robotstxt/forbidden",
    "unreadable_pages": contract.UNREADABLE_PAGES,
    "dead_letters": contract.DEAD_LETTERS,
    # Links to pages already requested (harmless, read once): offpeak.scraping.extensions.dropped.
    "duplicate_requests": contract.DUPLICATE_REQUESTS,
    "elapsed_seconds": "elapsed_time_seconds",
    # Pages read from an earlier, killed try's kept pages instead of fetched (crawl.resume).
    "resumed_pages": contract.RESUMED_PAGES,
}


def dead_letters_beside(stats: Path) -> Path:
    """Where a crawl writes its dead letters: next to its stats file."""
    return stats.with_name("dead_letters.jsonl")


@dataclass(frozen=True)
class CrawlFiles:
    """The files a crawl writes in its work dir."""

    workdir: Path

    @property
    def feed(self) -> Path:
        return self.workdir / "items.jsonl"

    @property
    def stats(self) -> Path:
        return self.workdir / "stats.json"

    @property
    def dead_letters(self) -> Path:
        return dead_letters_beside(self.stats)


@dataclass(frozen=True)
class FeedSummary:
    """A feed file's line count (its items), size in bytes and SHA-256."""

    items: int
    size: int
    sha256: str


def read_stats(path: Path) -> dict[str, Any]:
    """The crawl's stats; empty when it wrote none (it died before closing)."""
    return json.loads(path.read_text()) if path.exists() else {}


def read_dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def count_and_hash(path: Path) -> FeedSummary:
    """Items, bytes and SHA-256 of a JSON Lines feed; a feed the crawl never wrote is empty."""
    digest, lines, size = hashlib.sha256(), 0, 0
    if path.exists():
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                lines += block.count(b"\n")
                size += len(block)
    return FeedSummary(lines, size, digest.hexdigest())


FIRST_DEAD_LETTERS = 3  # shown in a partial-day alert; all of them are in the file


def pointer(
    crawled: CrawlResult, *, uri: str, dead_letters_uri: str, started: datetime
) -> dict[str, Any]:
    """The task's XCom: the partition (offpeak.partition.Partition.to_xcom), where its feed
    (``uri``) and dead letters were published, and what the crawl was like."""
    stats, feed, letters = crawled.stats, crawled.feed, crawled.dead_letters
    result = {
        "uri": uri,
        **crawled.request.partition.to_xcom(),
        "items": feed.items,
        "bytes": feed.size,
        "sha256": feed.sha256,
        "finish_reason": stats.get("finish_reason", "unknown"),
        "complete": crawled.decision.complete,
        "incomplete": contract.incomplete_causes(stats) or None,
        "dead_letters": len(letters),
        "crawl_started_at": started.isoformat(timespec="seconds"),
        "stats": {k: stats[v] for k, v in KEY_STATS.items() if v in stats},
        "checks": quality.summary(crawled.decision.checks),
    }
    if letters:
        result["dead_letters_uri"] = dead_letters_uri
    if not crawled.decision.complete:  # for the partial-day alert (alerts.notifier)
        result["partial_reasons"] = list(crawled.decision.reasons)
        result["first_dead_letters"] = [
            {"url": letter.get("url"), "reason": letter.get("reason")}
            for letter in letters[:FIRST_DEAD_LETTERS]
        ]
    return result
