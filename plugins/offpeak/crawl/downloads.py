"""A data_file site's downloads of the day on the data root: restored into the crawl's work
folder before it runs, the new ones kept after it, so every run of the day (a backfill of a
year is many runs of one day) sends a conditional request and reads the kept copy on a 304.

Kept per (site, UTC day) under ``<root>/downloads/site=<s>/day=<d>/``: a file is revalidated
against its server all day, and a new day starts with a full download. The crawl subprocess
reads and writes only its work folder (offpeak.scraping.files.Downloads); this task process
moves the files, so on an ``s3://`` root the crawl needs no connection of its own. Days before
yesterday are removed by the site's next crawl.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from offpeak.pipeline import storage

KEEP_DAYS = 2  # today's and yesterday's (a run that began before midnight UTC)


class DayDownloads:
    """The site's downloads of ``day`` on the data root, and their copy in ``local``."""

    def __init__(self, site: str, local: Path, day: date | None = None, log: Any = None) -> None:
        self.site, self.local = site, local
        self.day = day or datetime.now(tz=UTC).date()
        self.folder = storage.downloads(site, self.day)
        self.log = log or logging.getLogger(__name__)
        self.restored: dict[str, int] = {}

    def restore(self) -> int:
        """Copy the day's kept downloads into ``local``; returns how many files."""
        self.local.mkdir(parents=True, exist_ok=True)
        for name in storage.glob(self.folder, "*"):
            storage.download(self.folder / name, self.local / name)
            self.restored[name] = (self.local / name).stat().st_mtime_ns
        if self.restored:
            self.log.info(
                "Revalidating %d download(s) kept on %s in %s",
                len(self.restored) // 2, self.day, self.folder,
            )  # fmt: skip
        return len(self.restored)

    def keep(self) -> int:
        """Copy what the crawl downloaded anew to the data root (bodies before their
        validators: a reader needs both); returns how many files."""
        if not self.local.is_dir():
            return 0
        new = [
            p
            for p in sorted(self.local.iterdir(), key=lambda p: (p.suffix != ".body", p.name))
            if p.is_file() and not p.name.startswith(".")
            and self.restored.get(p.name) != p.stat().st_mtime_ns
        ]  # fmt: skip
        for path in new:
            storage.upload(path, self.folder / path.name)
        self.sweep()
        return len(new)

    def sweep(self) -> None:
        """Remove the site's downloads of days before the last KEEP_DAYS."""
        site_folder = storage.downloads(self.site)
        oldest = self.day - timedelta(days=KEEP_DAYS - 1)
        for name in storage.glob(site_folder, "day=*"):
            try:
                day = date.fromisoformat(name.removeprefix("day="))
            except ValueError:
                continue
            if day < oldest:
                storage.remove_tree(site_folder / name)
