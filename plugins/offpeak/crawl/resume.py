"""Resumable crawls: a try's pages travel to the data root while it crawls, and a later try of
the same run picks them up instead of fetching them again.

The crawl keeps each answered page in its work folder (offpeak.scraping.pages); a thread of the
task copies each new page to ``<data root>/crawl-state/site=…/region=…/date=…/<run key>/pages/``
within ``SYNC_SECONDS`` (``storage.crawl_state``), beside a ``manifest.json`` naming the
config version and the off-peak window it was crawled in. The data root is the only thing
workers share (a local folder, or ``s3://`` and the like through ``ObjectStoragePath``), so a
try on another worker resumes too.

A try that ends by itself (published, partial or failed by its verdict) removes the state: only
a try that was killed, or whose worker was lost, leaves its pages for the next. A state is
resumed only when it was written for the same config version (the site's YAML, its
connection's URL and the run's sample) and in the same off-peak window the new try runs in;
otherwise the new try says why in its log, removes it and starts from the first page.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offpeak.crawl.contract import PAGE_JOURNAL, PAGE_SUFFIX
from offpeak.pipeline import storage

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from offpeak.crawl.runner import CrawlRequest

STATE_FORMAT = 1
SYNC_SECONDS = 0.5  # how often the task copies the crawl's new pages to the data root
MANIFEST = "manifest.json"
PAGES = "pages"
# A state whose window is over and whose try started this long ago is swept away by the next
# crawl of its site and region (none can be resumed; a crawl never runs two days).
SWEEP_AFTER_SECONDS = storage.UNOWNED_AFTER.total_seconds()


def config_version(request: CrawlRequest) -> str:
    """What the kept pages depend on: the validated site config, the site's base URL and the
    run's sample (``max_pages``, ``start_urls``), hashed."""
    what = [STATE_FORMAT, request.site.model_dump(mode="json"), request.base_url]
    what.append(str(request.sample) if request.sample is not None else "")
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: the config version, the opening of the off-peak window the crawl
    started in (ISO), when and where its latest try started, and that try's number."""

    config: str
    window_opened: str
    started_at: str
    try_number: int
    host: str

    @classmethod
    def read(cls, path: ObjectStoragePath) -> Manifest | None:
        try:
            with storage.open_file(path, "rb") as fh:
                return cls(**json.loads(fh.read()))
        except (OSError, ValueError, TypeError):  # absent, or not one of ours
            return None


class CrawlState:
    """The kept pages of one partition's run, on the data root.

    :param folder: ``storage.crawl_state(partition)``
    :param config: ``config_version`` of this try's request
    :param window_opened: the opening of the off-peak window this try runs in (or, outside
        every window, of the last one): ``RegionClock.last_window_open``
    """

    def __init__(
        self, folder: ObjectStoragePath, config: str, window_opened: datetime,
        log: logging.Logger | None = None,
    ) -> None:  # fmt: skip
        self.folder = folder
        self.config = config
        self.window_opened = window_opened.isoformat()
        self.log = log or logging.getLogger(__name__)

    def restore(self, pages: Path, try_number: int) -> int:
        """Copy the pages an earlier try kept into ``pages`` when they may be resumed (else
        say why, and remove them), then record this try in the manifest. Returns how many
        pages were restored."""
        pages.mkdir(parents=True, exist_ok=True)
        kept = self._resumable()
        for name in kept:
            storage.download(self.folder / PAGES / name, pages / name)
        if kept:
            self.log.info(
                "Resuming the crawl from %s: %d page(s) an earlier try fetched are read from "
                "there, not fetched again", self.folder, len(kept),
            )  # fmt: skip
        manifest = Manifest(
            self.config, self.window_opened, datetime.now(tz=UTC).isoformat(timespec="seconds"),
            try_number, socket.gethostname(),
        )  # fmt: skip
        tmp = pages.parent / MANIFEST
        tmp.write_text(json.dumps(asdict(manifest)))
        storage.upload(tmp, self.folder / MANIFEST)
        return len(kept)

    def _resumable(self) -> list[str]:
        names = storage.glob(self.folder / PAGES, f"*{PAGE_SUFFIX}")
        old = Manifest.read(self.folder / MANIFEST)
        if old is None and not names:
            return []
        if old is None:
            why = "it has no manifest, so nothing says which config or window it is from"
        elif old.config != self.config:
            why = (
                f"it was written for another config version ({old.config[:12]}; this try's is "
                f"{self.config[:12]}): the site's YAML, its connection's URL or the run's sample "
                "changed since"
            )
        elif old.window_opened != self.window_opened:
            why = (
                f"it is older than this try's off-peak window: it was crawled in the window "
                f"that opened at {old.window_opened}, this try runs in the one that opened at "
                f"{self.window_opened}"
            )
        else:
            return names
        self.log.warning(
            "Not resuming from the crawl state %s (%d page(s)): %s; removed, and the crawl "
            "starts from its first page", self.folder, len(names), why,
        )  # fmt: skip
        storage.remove_tree(self.folder)
        return []

    @contextmanager
    def syncing(self, pages: Path, every: float = SYNC_SECONDS) -> Iterator[None]:
        """While the crawl runs, copy each new page it keeps in ``pages`` to the data root;
        the last ones when it ends, however it ends."""
        uploader = _Uploader(pages, self.folder / PAGES, every, self.log)
        uploader.start()
        try:
            yield
        finally:
            uploader.close()

    def discard(self) -> None:
        """The try ended by itself: its pages are of no further use."""
        storage.remove_tree(self.folder)
        self.log.info("The crawl ended: its kept pages (%s) are removed", self.folder)

    @staticmethod
    def sweep(site_region: ObjectStoragePath, log: logging.Logger | None = None) -> int:
        """Remove the states under ``site_region`` (``crawl-state/site=…/region=…``) whose try
        started over SWEEP_AFTER_SECONDS ago: their window is long over, so none can be
        resumed (a run whose last try was killed leaves one). Returns how many."""
        now = datetime.now(tz=UTC)
        removed = 0
        for name in storage.glob(site_region, f"date=*/*/{MANIFEST}"):
            manifest = Manifest.read(site_region / name)
            if manifest is None:
                continue
            age = (now - datetime.fromisoformat(manifest.started_at)).total_seconds()
            if age > SWEEP_AFTER_SECONDS:
                storage.remove_tree((site_region / name).parent)
                removed += 1
        if removed:
            (log or logging.getLogger(__name__)).info(
                "Removed %d crawl state(s) under %s older than %.0f h: none can be resumed",
                removed, site_region, SWEEP_AFTER_SECONDS / 3600,
            )  # fmt: skip
        return removed


class _Uploader(threading.Thread):
    """Copies the pages named in the crawl's journal to ``dest``, every ``every`` seconds."""

    def __init__(self, pages: Path, dest: ObjectStoragePath, every: float, log: Any) -> None:
        super().__init__(name="offpeak-crawl-state", daemon=True)
        self.journal = pages / PAGE_JOURNAL
        self.pages, self.dest, self.every, self.log = pages, dest, every, log
        self.offset = 0
        self.failed = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.push()

    def push(self) -> None:
        with self.lock:
            try:
                with open(self.journal, "rb") as fh:
                    fh.seek(self.offset)
                    new = fh.read()
            except FileNotFoundError:  # the crawl has kept no page yet
                return
            whole = new[: new.rfind(b"\n") + 1]  # a line being written is read next time
            for name in whole.decode().split():
                try:
                    storage.upload(self.pages / name, self.dest / name)
                except Exception as exc:  # never fail the crawl: a retry would fetch it again
                    self.failed += 1
                    if self.failed == 1:
                        self.log.warning(
                            "Could not copy a kept page to %s (%s): a retry after a lost "
                            "worker would fetch such pages again", self.dest, exc,
                        )  # fmt: skip
            self.offset += len(whole)

    def close(self) -> None:
        self.done.set()
        self.join()
        self.push()
        if self.failed:
            self.log.warning("%d kept page(s) could not be copied to %s", self.failed, self.dest)
