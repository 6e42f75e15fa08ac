"""Data-quality checks' common ground: a check's result, and how results are logged and fail
a run (crawl monitors: offpeak.crawl.checks; partition checks: offpeak.warehouse.checks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from offpeak.errors import Final

if TYPE_CHECKING:
    from offpeak.config import Site

log = logging.getLogger(__name__)


class QualityCheckFailed(Final):
    """One or more quality checks failed; the message names each check and its numbers."""


@dataclass(frozen=True)
class Check:
    """The outcome of one check; ``detail`` holds the numbers it was decided on."""

    name: str
    passed: bool
    detail: str
    field: str | None = None  # the site field it is about, for per-field checks
    skipped: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}.{self.field}" if self.field else self.name

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "passed" if self.passed else "failed"


def pct(share: float) -> str:
    """``0.125`` as ``12.5%``, ``0.1`` as ``10%``."""
    return f"{share * 100:.1f}".removesuffix(".0") + "%"


# ----------------------------------------------------------------------------- reporting


def summary(checks: list[Check]) -> dict[str, str]:
    """``{label: passed|failed|skipped}``: small enough for an XCom."""
    return {c.label: c.status for c in checks}


def log_checks(checks: list[Check], logger: Any = None) -> None:
    """One line per check (to ``logger``, else this module's), so the task log shows every
    result and its numbers."""
    for c in checks:
        level = logging.INFO if c.passed else logging.WARNING
        (logger or log).log(level, "Quality check %s %s: %s", c.name, c.status, c.detail)


def raise_failures(checks: list[Check], site: Site | str, region: str, trading_date: date) -> None:
    """Raise QualityCheckFailed listing every failed check, or return if all passed."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return
    where = f"site {getattr(site, 'name', site)} region {region} {trading_date}"
    if len(failed) == 1:
        (c,) = failed
        raise QualityCheckFailed(f"quality check {c.name} failed for {where}: {c.detail}")
    lines = "\n".join(f"  {c.name}: {c.detail}" for c in failed)
    raise QualityCheckFailed(
        f"{len(failed)} quality checks failed for {where} "
        f"({', '.join(c.name for c in failed)}):\n{lines}"
    )
