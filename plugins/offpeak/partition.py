"""Partition: a run's (site, region, trading date), the value crawl, transform and load pass."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Partition:
    """The (site, region, trading date) partition one DAG run writes, and that run.

    A file of the partition is named by ``run_key`` (so a re-run overwrites its own files);
    the warehouse's rows and audit row carry ``run_id``. The crawl's XCom carries it as
    strings (``to_xcom``), which the transform and the load read back (``from_xcom``).
    """

    site: str
    region: str
    trading_date: date
    run_id: str

    @property
    def run_key(self) -> str:
        """A file-name-safe, stable name for the run (re-runs overwrite their own files)."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.run_id).strip("_") or "run"

    def __str__(self) -> str:
        return f"site {self.site!r} region {self.region!r} {self.trading_date}"

    def to_xcom(self) -> dict[str, str]:
        """The partition as an XCom's JSON keys: ``site``, ``region``, ``trading_date``
        (``YYYY-MM-DD``) and ``run_id``."""
        return {
            "site": self.site,
            "region": self.region,
            "trading_date": self.trading_date.isoformat(),
            "run_id": self.run_id,
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any], run_id: str | None = None) -> Partition:
        """The partition of an XCom written by :meth:`to_xcom`; ``run_id`` names the run
        when the XCom does not (one written before it carried the run)."""
        run = value.get("run_id") or run_id
        if not run:
            raise ValueError(f"the XCom names no run_id (its keys: {sorted(value)})")
        return cls(value["site"], value["region"], date.fromisoformat(value["trading_date"]), run)
